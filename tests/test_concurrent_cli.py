"""Two `msvqa` commands at once on one project and one store: what a scheduled reprocess meeting a run
started from the UI does. Both end well, and the store equals one writer's, cell for cell."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from configs.loader import validate_config
from storage.store import open_store
from tasks.ingest.synth_dataset import generate_dataset

REPO = Path(__file__).resolve().parents[1]
TINY = Path(__file__).with_name("tiny.yaml")
_buckets = itertools.count()


def write_config(path: Path, data_dir: Path, root: Path, store: dict) -> Path:
    data = yaml.safe_load(TINY.read_text())
    data.update(data_dir=str(data_dir), store=store, runner={"kind": "local", "workers": 2})
    data["dataset"]["root"] = str(root)
    data["text"]["glove_path"] = str(root / "glove.txt")
    data["clips"]["videos_per_task"] = 1  # many small commits, so the two writers interleave
    data["features"]["videos_per_task"] = 1
    path.write_text(yaml.safe_dump(data))
    return path


def msvqa(*args: str) -> subprocess.Popen:
    # No PREFECT_API_URL: the commands share the project's temporary Prefect server between them.
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    return subprocess.Popen([sys.executable, "-m", "cli.app", *args, "--json"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def together(*commands: tuple[str, ...]) -> list[dict]:
    running = [msvqa(*command) for command in commands]
    outputs = [proc.communicate(timeout=400) for proc in running]
    assert [proc.returncode for proc in running] == [0] * len(running), [err[-2500:] for _, err in outputs]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


def cells(config_path: Path) -> dict:
    config = validate_config(yaml.safe_load(config_path.read_text()))
    store = open_store(config.store, mode="r")
    out = {}
    for kind in ("clips", "features"):
        for group in store.find(config.dataset.name, kind):
            attrs = group.attrs
            out[f"{kind}/{group.ref.spec_hash}/attrs"] = attrs
            for info in group.array_info():
                out[f"{kind}/{group.ref.spec_hash}/{info['name']}"] = group.read(info["name"])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_clips_then_two_features_at_once_equal_one_writer(where, tmp_path, request):
    root = tmp_path / "dataset"
    generate_dataset(root, 8, 3, width=64, height=48, frames=24, fps=8, glove_dim=8)
    if where == "local":
        stores = [{"path": str(tmp_path / name)} for name in ("shared.store", "single.store")]
    else:
        import boto3

        endpoint = request.getfixturevalue("s3_server")
        bucket = f"cli-{os.getpid()}-{next(_buckets)}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
        stores = [{"path": f"s3://{bucket}/{name}", "endpoint_url": endpoint} for name in ("shared", "single")]
    shared = write_config(tmp_path / "shared.yaml", tmp_path / "project", root, stores[0])
    single = write_config(tmp_path / "single.yaml", tmp_path / "alone", root, stores[1])

    clips = together(("clips", str(shared)), ("clips", str(shared)))
    features = together(("features", str(shared)), ("features", str(shared)))
    together(("clips", str(single)))
    together(("features", str(single)))

    assert all(result["complete"] == 8 for result in clips)
    assert all(result.get("extracted_now", 0) >= 0 for result in features)
    left, right = cells(shared), cells(single)
    assert sorted(left) == sorted(right) and any(key.endswith("/complete") for key in left)
    for key in left:
        if key.endswith("/attrs"):
            assert left[key] == right[key], key
        else:
            np.testing.assert_array_equal(left[key], right[key], err_msg=key)
    # Every write of both commands is a commit in the store's log, named by its stage.
    log = together(("store", "log", str(shared)))[0]["commits"]
    stages = [commit.get("stage") for commit in log]
    assert {"clips", "features"} <= set(stages)
    decoded = sum(result["decoded_now"] for result in clips)
    assert decoded >= 8  # every video decoded at least once; a row both decoded is written identically
    # The project's temporary Prefect server was shared and is gone with its last user.
    assert not (tmp_path / "project" / "prefect" / "temporary-server.json").exists()
