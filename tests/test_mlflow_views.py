"""What people see in MLflow and in `msvqa runs compare`: experiment kind, aliases, labelled grids, the table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from configs.schema import ModelConfig, TrackingConfig
from tasks.tracking.mlflow_adapter import open_tracker

REPO = Path(__file__).resolve().parents[1]


def _cfg(tmp_path: Path, experiment: str = "views") -> TrackingConfig:
    return TrackingConfig(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_location=tmp_path / "art",
                          experiment=experiment)


def test_experiment_opens_as_model_training_also_when_it_existed_before(tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(_cfg(tmp_path).uri)
    old = client.create_experiment("old", artifact_location=(tmp_path / "art").as_uri())  # no kind tag
    open_tracker(_cfg(tmp_path, "new"), "d")
    open_tracker(_cfg(tmp_path, "old"), "d")
    for name in ("new", "old"):
        assert client.get_experiment_by_name(name).tags["mlflow.experimentKind"] == "custom_model_development"
    assert client.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"


def test_only_video_models_become_champion_and_the_baseline_gets_its_own_alias(tmp_path):
    from mlflow.tracking import MlflowClient

    from tasks.train.publish import register as _register

    tracker = open_tracker(_cfg(tmp_path), "d")
    config = SimpleNamespace(dataset=SimpleNamespace(name="d"))
    data = SimpleNamespace(spec_hashes={"text": "abc"})
    results = {}
    for name, val_acc in (("dualvgr", 0.4), ("question_only", 0.3), ("dualvgr", 0.6), ("question_only", 0.2)):
        run_id = tracker.start_run(name)
        out = _register(tracker, run_id, config, ModelConfig(name=name), data, torch.nn.Linear(2, 2),
                        {"val_acc": val_acc}, "bundle/bundle.pt")
        results.setdefault(name, []).append(out)
    client = MlflowClient(tracker.cfg.uri)
    assert client.get_registered_model("d-dualvgr").aliases == {"champion": 2}
    assert client.get_registered_model("d-question_only").aliases == {"baseline": 1}
    assert [r["champion"] for r in results["dualvgr"]] == [True, True]
    assert [(r["champion"], r["alias"]) for r in results["question_only"]] == [(False, "baseline"), (False, None)]


def test_labelled_grid_names_every_row_and_column_and_keeps_the_pixels():
    from matplotlib.figure import Figure

    from tasks.tracking.plots import labelled_grid

    rng = np.random.default_rng(0)
    rows = rng.integers(0, 256, size=(4, 3, 5, 6, 3), dtype=np.uint8)
    rows_labels = ["video 1 input", "video 1 decoded", "video 2 input", "video 2 decoded"]
    columns = ["clip 1\nframe 1", "clip 2\nframe 1", "clip 3\nframe 1"]
    fig = labelled_grid(rows, rows_labels, columns, title="appearance")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == rows_labels
    assert [t.get_text() for t in ax.get_xticklabels()] == columns
    image = np.asarray(ax.images[0].get_array())
    # Each tile sits at (row * (5 + 1), column * (6 + 1)) behind a 1-pixel white gap.
    assert np.array_equal(image[2 * 6:2 * 6 + 5, 1 * 7:1 * 7 + 6], rows[2, 1])
    assert (image[5, :] == 255).all()
    with pytest.raises(ValueError):
        labelled_grid(rows, rows_labels[:2], columns)


def _project(tmp_path: Path) -> Path:
    """A project folder whose configs/demo.yaml tracks to a store holding two runs under one parent."""
    project = tmp_path / "project"
    (project / "configs").mkdir(parents=True)
    cfg = _cfg(project / "data", "msvqa-demo")
    tracker = open_tracker(cfg, "d")
    parent = tracker.start_run("train", tags={"stage": "train"})
    for model, acc in (("dualvgr", 0.5), ("question_only", 0.25)):
        run_id = tracker.start_run(f"{model}-with-a-rather-long-run-name-that-would-wrap",
                                   tags={"stage": "train", "model": model}, parent_run_id=parent)
        tracker.log_metrics(run_id, {"best_val_acc": acc, "test_acc": acc,
                                     **{f"test_acc_{t}": acc for t in ("what", "who", "how", "when", "where")}})
    (project / "configs" / "demo.yaml").write_text(yaml.safe_dump({
        "data_dir": "data", "dataset": {"name": "d", "root": "data/dataset"},
        "tracking": {"uri": cfg.uri, "artifact_location": str(cfg.artifact_location), "experiment": "msvqa-demo"}}))
    return project


def _compare(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80", "MLFLOW_DISABLE_TELEMETRY": "true",
           "DO_NOT_TRACK": "1"}
    return subprocess.run([sys.executable, "-m", "cli.app", "runs", "compare", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120)


def test_runs_compare_uses_the_projects_demo_config_and_prints_only_the_whole_table(tmp_path):
    project = _project(tmp_path)
    out = _compare(project)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""  # no title, no result dict, no timing line
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    header = lines[0].split()
    assert header[:4] == ["run_name", "model", "val_acc", "test_acc"] and "baseline" in header
    # Piped: every run is one line, however wide, so the long names are never wrapped at 80 columns.
    body = [line for line in lines[1:] if "with-a-rather-long" in line]
    assert len(body) == 2 and max(len(line) for line in lines) > 80
    dualvgr = next(line for line in body if line.split()[1] == "dualvgr").split()
    assert dualvgr[2:4] == ["50.0", "50.0"] and "25.0" in dualvgr  # its baseline beside it
    as_json = _compare(project, "--json")
    assert as_json.returncode == 0 and len(as_json.stdout.strip().splitlines()) == 1
    record = json.loads(as_json.stdout)
    assert record["experiment"] == "msvqa-demo" and {r["model"] for r in record["runs"]} == {"dualvgr", "question_only"}
