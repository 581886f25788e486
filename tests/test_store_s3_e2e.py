"""No shared filesystem: the tiny pipeline with the store and MLflow's artifacts on S3 (moto on loopback),
clips and features on Dask workers started in another working directory, then `answer` from a third folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import free_port

REPO = Path(__file__).resolve().parents[1]
TINY = Path(__file__).with_name("tiny.yaml")
ICECHUNK_LAYOUT = {"chunks", "manifests", "snapshots", "transactions", "refs", "zarr.json", "msvqa-commit.lock"}


def _config(tmp_path: Path, endpoint: str, bucket: str) -> Path:
    data = yaml.safe_load(TINY.read_text())
    driver = tmp_path / "driver-data"
    data["data_dir"] = str(driver)
    data["dataset"]["root"] = str(tmp_path / "dataset")
    data["text"]["glove_path"] = str(tmp_path / "dataset" / "glove.txt")
    data["store"] = {"path": f"s3://{bucket}/store", "endpoint_url": endpoint}
    data["train"]["checkpoint_dir"] = str(driver / "checkpoints")
    data["train"]["baseline"] = False
    data["tracking"].update(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_location=f"s3://{bucket}/mlartifacts")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _cli(args: list[str], env: dict, cwd: Path) -> dict:
    result = subprocess.run([sys.executable, "-m", "cli.app", *args], capture_output=True, text=True, env=env,
                            timeout=600, cwd=cwd)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_pipeline_on_s3_with_workers_sharing_no_folder_then_answer_elsewhere(tmp_path, s3_server):
    import boto3
    from distributed import Client
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from configs.loader import load_config
    from storage.store import open_store

    bucket = f"e2e-{os.getpid()}"
    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    config = _config(tmp_path, s3_server, bucket)
    worker_dir, elsewhere = tmp_path / "worker-cwd", tmp_path / "elsewhere"
    worker_dir.mkdir()
    elsewhere.mkdir()

    with prefect_test_harness(server_startup_timeout=180):  # the shared machine is often busy
        # The project is importable everywhere, but no process other than the driver starts in the checkout.
        env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value(), MLFLOW_S3_ENDPOINT_URL=s3_server,
                   PYTHONPATH=str(REPO))
        port = free_port()
        address = f"tcp://127.0.0.1:{port}"
        dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
        procs = [subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0"],
                                  cwd=worker_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        try:
            time.sleep(1.0)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "2", "--nthreads", "1",
                 "--no-dashboard", "--local-directory", str(worker_dir)],
                cwd=worker_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            with Client(address, timeout=120) as client:
                client.wait_for_workers(2, timeout=120)
                assert set(client.run(os.getcwd).values()) == {str(worker_dir)}
            ran = _cli(["run", str(config), "--set", f"runner.address={address}", "--json"], env, REPO)
        finally:
            for proc in procs[::-1]:
                proc.terminate()
                proc.wait(timeout=60)
        # Answer from another folder: the bundle comes from the S3 artifact store through the registry.
        answered = _cli(["answer", "--model", "models:/tiny-dualvgr@champion", "--tracking-uri", ran["tracking_uri"],
                         "--video", str(sorted((tmp_path / "dataset" / "video").glob("*.avi"))[0]),
                         "--question", "what color is the square?", "--device", "cpu", "--json"], env, elsewhere)

    assert len(answered["answers"]) == 5
    assert 0.0 < sum(row["probability"] for row in answered["answers"]) <= 1.0 + 1e-6
    videos = len(list((tmp_path / "dataset" / "video").glob("*.avi")))  # the oracle: files on disk
    assert ran["details"]["clips"]["complete"] == videos == 12

    # Read back through the store API on S3: every video complete, its rows written (never fill values).
    cfg = load_config(config, [])
    store = open_store(cfg.store, mode="r")
    groups = {kind: store.find("tiny", kind) for kind in ("clips", "features", "text")}
    assert all(len(found) == 1 for found in groups.values()), groups
    for kind in ("clips", "features"):
        group = groups[kind][0]
        assert group.completed().tolist() == [True] * videos, kind
        for name in [i["name"] for i in group.array_info() if i["name"] not in ("complete", "num_frames")]:
            values = np.asarray(group.read(name))
            assert values.shape[0] == videos
            assert all(np.any(values[row] != 0) for row in range(videos)), f"{kind}/{name} has an empty row"
    assert groups["text"][0].attrs.get("complete") is True
    assert {c["stage"] for c in store.log()} >= {"clips", "features", "text"}

    # Nothing of the store or of the artifacts landed on the driver's disk.
    written = {p.name for p in (tmp_path / "driver-data").rglob("*")}
    assert not written & ICECHUNK_LAYOUT, sorted(written & ICECHUNK_LAYOUT)
    assert "mlartifacts" not in written
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="mlartifacts/").get("Contents", [])]
    assert any(key.endswith("bundle/bundle.pt") for key in keys), keys[:20]
