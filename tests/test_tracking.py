"""MLflow records: champion alias, inference bundle, lineage, system metrics, tags, run comparison."""

from __future__ import annotations

import math
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from configs.errors import UserError
from configs.schema import TrackingConfig
from tasks.tracking.compare import compare_runs, runs_records, runs_text
from tasks.tracking.mlflow_adapter import git_commit, open_tracker
from test_baseline import tiny_config, write_annotations


def _tracker(tmp_path: Path, experiment: str = "t"):
    cfg = TrackingConfig(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_location=tmp_path / "art",
                         experiment=experiment)
    return open_tracker(cfg, "d")


def test_two_runs_register_versions_and_champion_follows_val_acc(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from flows.baseline import run_baseline

    write_annotations(tmp_path / "dataset")
    results = []
    for lr in (1e-5, 1e-2):  # a run that barely learns, then one that does
        config = tiny_config(tmp_path, tracking={"register_model": True}, train={"qa": {"epochs": 3, "batch_size": 16,
                                                                                      "lr": lr}})
        results.append(run_baseline(config))
    client = MlflowClient(config.tracking.uri)
    name = "tinytext-question_only"
    versions = {v.run_id: v for v in client.search_model_versions(f"name='{name}'")}
    assert set(versions) == {r["run_id"] for r in results}
    best = max(results, key=lambda r: r["val_acc"])
    # The question-only floor is never `champion` (what answer/search default to): its best holds `baseline`.
    floor = client.get_model_version_by_alias(name, "baseline")
    assert floor.run_id == best["run_id"]
    assert float(floor.tags["val_acc"]) == pytest.approx(best["val_acc"])
    assert set(client.get_registered_model(name).aliases) == {"baseline"}
    # The inference bundle is an artifact of the run, and both the run and the version point to it.
    run = client.get_run(results[0]["run_id"])
    assert run.data.tags["bundle_artifact"] == "bundle/bundle.pt"
    assert [a.path for a in client.list_artifacts(run.info.run_id, "bundle")] == ["bundle/bundle.pt"]
    assert versions[run.info.run_id].tags["bundle_artifact"] == "bundle/bundle.pt"
    from mlflow.artifacts import download_artifacts

    from tasks.serving.bundle import load_bundle

    local = download_artifacts(run_id=run.info.run_id, artifact_path="bundle/bundle.pt",
                               tracking_uri=config.tracking.uri, dst_path=str(tmp_path / "download"))
    bundle = load_bundle(Path(local))
    assert bundle.metrics["val_acc"] == pytest.approx(results[0]["val_acc"]) and "text" in bundle.spec_hashes
    # Lineage: the store groups as the run's dataset input, with the spec hashes' digest.
    dataset = run.inputs.dataset_inputs[0]
    # The digest is the store snapshot the run read, also its `store.snapshot` tag, and one of the store's commits.
    from storage.store import open_store

    assert dataset.dataset.source_type == "local" and dataset.dataset.digest == run.data.tags["store.snapshot"]
    assert dataset.dataset.digest in {c["id"] for c in open_store(config.store, mode="r").log()}
    assert {t.key: t.value for t in dataset.tags}["mlflow.data.context"] == "training"
    assert {"predictions/test_predictions.csv", "predictions/test_predictions.parquet"} <= {
        a.path for a in client.list_artifacts(run.info.run_id, "predictions")}
    assert "plots/test_acc_by_type.png" in {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    # The commit itself, asked of git here, not the helper that made the tag.
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False,
                          cwd=Path(__file__).resolve().parents[1])
    assert run.data.tags["git.commit"] == (head.stdout.strip() if head.returncode == 0 else "unknown")
    # A CPU run with the default train.amp_cpu (false) computes in float32, and says so.
    assert run.data.tags["precision"] == "float32"


def test_champion_moves_only_to_a_better_version(tmp_path):
    tracker = _tracker(tmp_path)
    name = "d-tiny"
    moved = []
    for val_acc in (0.3, 0.5, 0.4, math.nan):
        run_id = tracker.start_run("m")
        _, version = tracker.log_model(run_id, torch.nn.Linear(2, 2), registered_name=name)
        moved.append((version, tracker.promote_if_best(name, version, val_acc)))
    assert moved == [("1", True), ("2", True), ("3", False), ("4", False)]
    assert tracker.champion(name) == ("2", 0.5)


def test_compare_runs_puts_each_model_beside_its_baseline(tmp_path):
    tracker = _tracker(tmp_path, "cmp")
    parent = tracker.start_run("train", tags={"stage": "train"})
    for model, acc in (("dualvgr", 0.5), ("question_only", 0.3)):
        run_id = tracker.start_run(model, tags={"stage": "train", "model": model}, parent_run_id=parent)
        tracker.log_metrics(run_id, {"best_val_acc": acc + 0.01, "test_acc": acc, "test_acc_what": acc - 0.1})
        time.sleep(0.01)  # distinct start times
    lone = tracker.start_run("question_only", tags={"stage": "train", "model": "question_only"})
    tracker.log_metrics(lone, {"test_acc": 0.2})

    frame = compare_runs(tracker)
    assert list(frame["model"]) == ["question_only", "question_only", "dualvgr"]  # newest first
    row = frame[frame["model"] == "dualvgr"].iloc[0]
    assert (row["val_acc"], row["test_acc"], row["baseline_test_acc"]) == pytest.approx((0.51, 0.5, 0.3))
    assert row["test_acc_what"] == pytest.approx(0.4) and math.isnan(row["test_acc_who"])
    assert math.isnan(frame.iloc[0]["baseline_test_acc"])  # the lone run has no sibling baseline
    records = runs_records(frame)
    assert records[0]["test_acc_who"] is None and isinstance(records[0]["start_time"], str)
    assert isinstance(frame["start_time"].iloc[0], pd.Timestamp)
    text = runs_text(frame).splitlines()
    assert text[0].split()[:4] == ["run_name", "model", "val_acc", "test_acc"] and "who" not in text[0]
    assert text[-1].split()[:5] == ["dualvgr", "dualvgr", "51.0", "50.0", "40.0"]


def test_compare_runs_refuses_an_unknown_experiment(tmp_path):
    config = tiny_config(tmp_path)
    with pytest.raises(UserError, match="experiment 'nope' does not exist"):
        compare_runs(config, "nope")


def test_system_metrics_are_logged_while_the_block_runs(tmp_path):
    tracker = _tracker(tmp_path)
    run_id = tracker.start_run("m")
    with tracker.system_metrics(run_id, interval_s=0.2):
        time.sleep(1.0)
    tracker.end_run(run_id)
    assert any(key.startswith("system/cpu_utilization") for key in tracker.metrics(run_id))


def test_git_commit_is_head_in_a_checkout_and_unknown_elsewhere(tmp_path):
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert git_commit() == (head.stdout.strip() if head.returncode == 0 else "unknown")
    assert git_commit(tmp_path) == "unknown"


def test_champion_is_the_best_of_concurrent_promotions(tmp_path):
    """Four trainings finish together; each reads the champion, then (slowed here) moves it.

    The slower a promoter, the worse its model, so without a compare-and-set the worst would move last
    and keep `champion`. The oracle is the plain maximum of the accuracies.
    """
    import threading

    name, accs = "d-race", [0.9, 0.7, 0.5, 0.3]
    setup = _tracker(tmp_path)
    versions = []
    for _ in accs:
        _, version = setup.log_model(setup.start_run("m"), torch.nn.Linear(2, 2), registered_name=name)
        versions.append(version)
    barrier, results = threading.Barrier(len(accs)), {}

    def promote(version: str, val_acc: float, delay: float) -> None:
        tracker = _tracker(tmp_path)
        read = tracker.champion

        def slow_read(*args, **kwargs):
            found = read(*args, **kwargs)
            time.sleep(delay)  # the window between reading the champion and moving it
            return found
        tracker.champion = slow_read
        barrier.wait()
        results[version] = tracker.promote_if_best(name, version, val_acc)

    threads = [threading.Thread(target=promote, args=(v, a, 0.3 * i)) for i, (v, a) in enumerate(zip(versions, accs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    best = versions[accs.index(max(accs))]
    assert setup.champion(name) == (best, max(accs))
    assert results[best] is True
