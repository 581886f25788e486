"""The clip store under crashes, bad videos and a growing dataset: `kill -9` then a rerun equals a clean run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from configs.loader import validate_config
from configs.schema import PipelineConfig
from storage.store import Store
from tasks.video.clips import ClipJob, clip_spec, prepare_clip_group, process_clip_jobs
from tasks.ingest.synth_dataset import generate_dataset

REPO = Path(__file__).resolve().parents[1]
TINY = Path(__file__).with_name("tiny.yaml")


def tiny_data(tmp_path: Path, root: Path, store: str = "store.zarr", **changes) -> dict:
    """tests/tiny.yaml pointed at `root` and a store in `tmp_path`, local runner, with `section.key` changes."""
    data = yaml.safe_load(TINY.read_text())
    data.update(data_dir=str(tmp_path), store={"path": str(tmp_path / store)}, runner={"kind": "local", "workers": 2})
    data["dataset"]["root"] = str(root)
    data["text"]["glove_path"] = str(root / "glove.txt")
    for key, value in changes.items():
        section, name = key.split(".")
        data[section][name] = value
    return data


def tiny_config(tmp_path: Path, root: Path, store: str = "store.zarr", **changes) -> PipelineConfig:
    return validate_config(tiny_data(tmp_path, root, store, **changes))


def clip_group(config: PipelineConfig):
    return Store(config.store.path).spec_group(config.dataset.name, "clips", clip_spec(config.clips))


def assert_same_arrays(left: PipelineConfig, right: PipelineConfig, kinds=("clips",)) -> None:
    """Every array (completion flags included) of every group of `kinds` is equal in both stores."""
    a, b = Store(left.store.path, mode="r"), Store(right.store.path, mode="r")
    for kind in kinds:
        groups_a, groups_b = a.find(left.dataset.name, kind), b.find(right.dataset.name, kind)
        assert [g.ref.spec_hash for g in groups_a] == [g.ref.spec_hash for g in groups_b] and groups_a
        for ga, gb in zip(groups_a, groups_b):
            names = [info["name"] for info in ga.array_info()]
            assert names == [info["name"] for info in gb.array_info()] and "complete" in names
            for name in names:
                assert np.array_equal(ga.read(name), gb.read(name)), f"{ga.ref.path}/{name} differs"


def latest_artifact(key: str):
    """The newest version of the Prefect artifact `key`: its data is the table (as JSON) or the progress."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=[key])))
    assert len(found) == 1, f"no artifact {key}"
    return found[0].data


@pytest.fixture(scope="module")
def api_url():
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "dataset"
    generate_dataset(root, 8, 1, width=64, height=48, frames=24, fps=8, glove_dim=8)
    return root


def test_store_grows_along_the_video_axis_keeping_rows(tmp_path):
    group = Store(tmp_path / "s.zarr").spec_group("ds", "clips", {})
    group.ensure_array("x", (3, 2), "uint8", chunks=(1, 2))
    group.ensure_array("complete", (3,), "uint8")
    group.write("x", np.full((3, 2), 7, np.uint8))
    group.mark_complete([0, 2])
    assert group.grow(5) == ["complete", "x"] and group.grow(5) == []
    assert group.read("x").tolist() == [[7, 7]] * 3 + [[0, 0]] * 2
    assert group.completed().tolist() == [True, False, True, False, False]
    group.mark_incomplete([2])
    assert group.completed().tolist() == [True, False, False, False, False]
    with pytest.raises(ValueError, match="more than 4"):
        group.grow(4)
    group.quarantine({"a": "truncated", "b": "empty file"})
    group.release(["a", "zzz"])
    assert group.quarantined() == {"b": "empty file"}


def test_uncompressed_clips_equal_compressed_ones(tmp_path, dataset):
    videos = sorted((dataset / "video").glob("*.avi"))[:3]
    jobs = [ClipJob(row, row + 1, path.stem, str(path)) for row, path in enumerate(videos)]
    arrays, codecs = {}, {}
    for level in (-5, None):
        cfg = tiny_config(tmp_path, dataset, f"{level}.zarr", **{"clips.compression_level": level}).clips
        group = Store(tmp_path / f"{level}.zarr").spec_group("ds", "clips", clip_spec(cfg))
        prepare_clip_group(group, cfg, len(jobs))
        assert all(outcome["ok"] for outcome in process_clip_jobs(group.ref, jobs, cfg))
        arrays[level] = [group.read(name) for name in ("appearance", "motion")]
        codecs[level] = {info["name"]: info["compression"] for info in group.array_info()}
    assert codecs[-5]["appearance"] == "zstd level -5" and codecs[None]["appearance"] == "none"
    assert codecs[None]["motion"] == "none"
    for compressed, raw in zip(arrays[-5], arrays[None]):
        assert raw.any() and np.array_equal(compressed, raw)


def one_video_at_a_time(tmp_path: Path, dataset: Path) -> tuple[Path, PipelineConfig]:
    """A config (its YAML path and the model) whose stage tasks hold one video each, run one at a time."""
    data = tiny_data(tmp_path, dataset, "crashed.zarr", **{"clips.videos_per_task": 1,
                                                                "features.videos_per_task": 1})
    data["runner"]["workers"] = 1  # the kill lands between rows
    config_path = tmp_path / "crashed.yaml"
    config_path.write_text(yaml.safe_dump(data))
    return config_path, validate_config(data)


def kill_9_once_rows_are_written(stage: str, config_path: Path, store: Path, api_url: str, commits: int) -> None:
    """Run `msvqa STAGE` in its own process group and SIGKILL the group once it made `commits` new commits
    (its preparation, then a first batch), while its next batches are being written."""
    log = store / "transactions"  # one object per commit
    before = set(log.rglob("*")) if log.exists() else set()
    proc = subprocess.Popen([sys.executable, "-m", "cli.app", stage, str(config_path), "--json"], cwd=REPO,
                            env={**os.environ, "PREFECT_API_URL": api_url}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 150
    while sum(1 for p in log.rglob("*") if p.is_file() and p not in before) < commits:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, f"no {stage} rows written in 150 s"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: no clean-up, no final record
    proc.wait(timeout=30)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_kill_9_during_clips_then_rerun_equals_an_uninterrupted_run(tmp_path, dataset, api_url):
    from flows.clips import run_clips

    clean = tiny_config(tmp_path, dataset, "clean.zarr")
    run_clips(clean)
    config_path, crashed = one_video_at_a_time(tmp_path, dataset)
    # A new store: its creation, the group's, the index, then the first batch.
    kill_9_once_rows_are_written("clips", config_path, Path(crashed.store.path), api_url, commits=4)
    complete_before = int(clip_group(crashed).completed().sum())
    assert complete_before < 8

    rerun = run_clips(crashed)
    assert rerun["decoded_now"] == 8 - complete_before and rerun["complete"] == 8
    assert_same_arrays(clean, crashed)
    assert clip_group(crashed).attrs["files"] == clip_group(clean).attrs["files"]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kill_9_during_features_then_rerun_equals_an_uninterrupted_run(tmp_path, dataset, api_url):
    from flows.clips import run_clips
    from flows.features import feature_group_for, run_features

    clean = tiny_config(tmp_path, dataset, "clean.zarr")
    run_clips(clean)
    run_features(clean)
    config_path, crashed = one_video_at_a_time(tmp_path, dataset)
    run_clips(crashed)
    features = feature_group_for(crashed, clip_group(crashed))
    kill_9_once_rows_are_written("features", config_path, Path(crashed.store.path), api_url, commits=2)
    complete_before = int(features.completed().sum())
    assert complete_before < 8

    rerun = run_features(crashed)
    assert rerun["extracted_now"] == 8 - complete_before and rerun["complete"] == 8
    assert_same_arrays(clean, crashed, kinds=("clips", "features"))


def write_bad_videos(root: Path, good: Path) -> list[str]:
    """A zero-byte file, a text file named .avi and a truncated avi, appended to the mapping as vid101-103."""
    video = root / "video"
    (video / "zero_bytes.avi").write_bytes(b"")
    (video / "notes_renamed.avi").write_text("these are my notes, not a video\n")
    data = good.read_bytes()
    (video / "cut_short.avi").write_bytes(data[: int(len(data) * 0.3)])
    names = ["zero_bytes", "notes_renamed", "cut_short"]
    with (root / "youtube_mapping.txt").open("a") as mapping:
        mapping.writelines(f"{name} vid{101 + i}\n" for i, name in enumerate(names))
    return names


def test_bad_videos_are_quarantined_with_their_reason_and_never_marked_complete(tmp_path, api_url):
    from flows.clips import run_clips
    from cli.app import app

    root = tmp_path / "dataset"
    generate_dataset(root, 6, 2, width=64, height=48, frames=24, fps=8, glove_dim=8)
    good = sorted((root / "video").iterdir())[0]
    bad = write_bad_videos(root, good)
    config = tiny_config(tmp_path, root)

    summary = run_clips(config)
    assert (summary["videos"], summary["complete"], summary["decoded_now"], summary["quarantined"]) == (9, 6, 6, 3)
    group = clip_group(config)
    reasons = {"zero_bytes": "empty file", "notes_renamed": "not a video", "cut_short": "truncated"}
    assert group.quarantined() == reasons
    rows = [group.attrs["names"].index(name) for name in bad]
    assert rows == [6, 7, 8] and not group.completed()[rows].any()
    assert group.read("num_frames")[rows].tolist() == [0, 0, 0]

    assert json.loads(latest_artifact("clips-quarantine-tiny")) == \
        [{"video": v, "reason": r} for v, r in sorted(reasons.items())]
    assert latest_artifact("clips-progress-tiny") == 100.0

    result = CliRunner().invoke(app, ["store", "info", str(_yaml(tmp_path, config)), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output.strip().splitlines()[-1])
    clips = next(g for g in info["groups"] if g["kind"] == "clips")
    assert clips["quarantined"] == [{"video": v, "reason": r} for v, r in sorted(reasons.items())]
    assert (clips["videos"], clips["complete"]) == (9, 6)

    # Unchanged bad files are not retried; a bad file replaced by a good one is decoded on the next run.
    assert run_clips(config)["decoded_now"] == 0
    shutil.copyfile(good, root / "video" / "notes_renamed.avi")
    again = run_clips(config)
    assert (again["changed"], again["decoded_now"], again["complete"]) == (1, 1, 7)
    assert clip_group(config).quarantined() == {k: v for k, v in reasons.items() if k != "notes_renamed"}
    same_file = group.attrs["names"].index(good.stem)
    assert np.array_equal(group.read("appearance", 7), group.read("appearance", same_file))


def _yaml(tmp_path: Path, config: PipelineConfig) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return path


def test_questions_about_unmapped_video_ids_are_set_aside_counted_and_reported(tmp_path, dataset, api_url):
    from flows.ingest import ingest_flow

    root = tmp_path / "dataset"
    shutil.copytree(dataset, root)
    train = json.loads((root / "train_qa.json").read_text())
    stray = [dict(train[0], id=10_000 + i, video_id=vid) for i, vid in enumerate((900, 900, 901))]
    (root / "train_qa.json").write_text(json.dumps(train + stray))
    config = tiny_config(tmp_path, root)

    report = ingest_flow(config)  # the run goes on: no UserError
    assert report["unmapped_video_ids"] == [900, 901] and report["unmapped_questions"] == 3
    assert json.loads(latest_artifact("ingest-unmapped-tiny")) == [
        {"video_id": 900, "questions": 2, "reason": "not in youtube_mapping.txt"},
        {"video_id": 901, "questions": 1, "reason": "not in youtube_mapping.txt"}]
    # Later stages see no video row for them, so training sets them aside (tasks/train/data.py, load_qa_data).
