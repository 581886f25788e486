"""What people see in MLflow and in `msvqa runs compare`: experiment kind, the comparison view and its link,
telemetry off, aliases, labelled grids, the table."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from configs.schema import ModelConfig, TrackingConfig
from tasks.tracking.mlflow_adapter import comparison_link, open_tracker

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


# What MLflow 3.17's UI takes from a shared view (mlflow/server/js: the search facets, then the table and
# chart state it shares) and how it names a runs-table column: metrics.`name`, attributes.`Models`.
VIEW_KEYS = {"searchFilter", "orderByKey", "orderByAsc", "startTime", "lifecycleFilter", "modelVersionFilter",
             "datasetsFilter", "selectedColumns", "columnOrder", "columnWidths", "runsHiddenMode", "compareRunCharts",
             "compareRunSections", "viewMaximized", "runListHidden", "isAccordionReordered", "groupBy",
             "groupsExpanded", "useGroupedValuesInCharts", "hideEmptyCharts", "globalLineChartConfig",
             "chartsSearchFilter"}
VIEW_TAG = "mlflow.sharedViewState.msvqa-compare"


def test_the_comparison_view_shows_the_compared_accuracies_and_reopening_changes_nothing(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from tasks.text.vocabulary import QTYPES
    from tasks.tracking.compare import TYPE_COLUMNS

    client = MlflowClient(_cfg(tmp_path).uri)
    # Made by an older msvqa: an outdated view, and a kind someone chose by hand.
    old_tags = {VIEW_TAG: '{"selectedColumns": []}', "mlflow.experimentKind": "genai_development"}
    stale = client.create_experiment("stale", artifact_location=(tmp_path / "art").as_uri(), tags=old_tags)
    tracker = open_tracker(_cfg(tmp_path), "d")
    tags = client.get_experiment(tracker.experiment_id).tags
    view = json.loads(tags[VIEW_TAG])
    assert set(view) <= VIEW_KEYS
    # The accuracies as a training run logs them (tasks/train/run.py), the pipeline run's baseline last.
    metrics = [column for column in view["selectedColumns"] if column.startswith("metrics.")]
    assert metrics == ["metrics.`test_acc`", "metrics.`best_val_acc`", *(f"metrics.`test_acc_{t}`" for t in QTYPES),
                       "metrics.`baseline_test_acc`"]
    assert {f"metrics.`{name}`" for name in TYPE_COLUMNS} <= set(metrics)  # what `msvqa runs compare` shows
    assert (view["orderByKey"], view["orderByAsc"]) == ("metrics.`test_acc`", False)

    writes = []
    set_tag = MlflowClient.set_experiment_tag
    monkeypatch.setattr(MlflowClient, "set_experiment_tag",
                        lambda self, *args: writes.append(args) or set_tag(self, *args))
    again = open_tracker(_cfg(tmp_path), "d")
    assert again.experiment_id == tracker.experiment_id and writes == []  # nothing rewritten
    assert client.get_experiment(tracker.experiment_id).tags == tags
    assert [e.name for e in client.search_experiments()].count("views") == 1
    open_tracker(_cfg(tmp_path, "stale"), "d")
    assert [key for _, key, _ in writes] == [VIEW_TAG]  # the outdated view only; the hand-set kind stays
    updated = client.get_experiment(stale).tags
    assert updated[VIEW_TAG] == tags[VIEW_TAG] and updated["mlflow.experimentKind"] == "genai_development"


def test_the_pipeline_summary_links_the_comparison_view_and_runs_in_the_model_training_ui():
    from flows.summary import pipeline_markdown

    lines = pipeline_markdown("d", "http://127.0.0.1:5000/", "7", "par", "dualvgr", {"test_acc": 0.5}, {}).splitlines()
    assert ("- every run of the experiment, by test accuracy: [comparison view](http://127.0.0.1:5000/#/experiments/7"
            "/runs?viewStateShareKey=msvqa-compare&workflowType=machine_learning)") in lines
    assert ("- pipeline run: [par](http://127.0.0.1:5000/#/experiments/7/runs/par"
            "?workflowType=machine_learning)") in lines
    local = pipeline_markdown("d", "sqlite:///x.db", "7", "par", "dualvgr", {"test_acc": 0.5}, {})
    assert "`msvqa runs link CONFIG --ui-url MLFLOW_UI`" in local  # no UI of its own: the command that links


def _telemetry_off_in(path: Path) -> dict[str, str]:
    """The telemetry switches that the Makefile (`make ui`) or scripts/stack.sh export to the servers they start."""
    found = re.findall(r"\b(MLFLOW_DISABLE_TELEMETRY|DO_NOT_TRACK)\s*:?=\s*([^\s;]+)", path.read_text())
    return dict(found)


def _mlflow_telemetry_disabled(env: dict[str, str]) -> bool:
    code = "from mlflow.telemetry.utils import is_telemetry_disabled; print(is_telemetry_disabled())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1] == "True"


def test_the_mlflow_servers_the_project_starts_have_telemetry_off(tmp_path):
    """MLflow's server (and so its UI, which asks the server before it sends any usage event) decides from its
    environment. Checked in a bare environment: no CI or pytest variable, which MLflow also reads as "off"."""
    bare = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    assert not _mlflow_telemetry_disabled(bare)  # the check is not vacuous: MLflow is on by default
    assert not _mlflow_telemetry_disabled({**bare, "DO_NOT_TRACK": "1"})  # MLflow reads only DO_NOT_TRACK=true
    for starter in (REPO / "Makefile", REPO / "scripts" / "stack.sh"):
        switches = _telemetry_off_in(starter)
        assert switches.get("MLFLOW_DISABLE_TELEMETRY") == "true", starter
        assert _mlflow_telemetry_disabled({**bare, **switches}), starter


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


def _runs(project: Path, command: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80", "MLFLOW_DISABLE_TELEMETRY": "true",
           "DO_NOT_TRACK": "1"}
    return subprocess.run([sys.executable, "-m", "cli.app", "runs", command, *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120)


def _compare(project: Path, *args: str) -> subprocess.CompletedProcess:
    return _runs(project, "compare", *args)


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


def test_runs_link_opens_the_experiment_in_the_comparison_view_creating_it_once(tmp_path):
    from mlflow.tracking import MlflowClient

    project = _project(tmp_path)
    client = MlflowClient(_cfg(project / "data").uri)
    existing = client.get_experiment_by_name("msvqa-demo").experiment_id
    out = _runs(project, "link", "--ui-url", "http://127.0.0.1:5000/")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert out.stdout == (f"http://127.0.0.1:5000/#/experiments/{existing}/runs"
                          "?viewStateShareKey=msvqa-compare&workflowType=machine_learning\n")
    # An experiment no run has made yet: made now, with its view, and the same one the next time.
    made = _runs(project, "link", "--ui-url", "http://127.0.0.1:5000", "--experiment", "new")
    new = client.get_experiment_by_name("new")
    link = f"http://127.0.0.1:5000/#/experiments/{new.experiment_id}/runs" \
        "?viewStateShareKey=msvqa-compare&workflowType=machine_learning"
    assert made.returncode == 0 and made.stdout == link + "\n", made.stderr
    assert comparison_link(_cfg(project / "data", "new"), "d", "http://127.0.0.1:5000") == link
    assert VIEW_TAG in new.tags and [e.name for e in client.search_experiments()].count("new") == 1
    # A tracking database has no UI of its own: the command asks for its address.
    no_ui = _runs(project, "link")
    assert no_ui.returncode == 2 and "--ui-url" in no_ui.stderr and no_ui.stdout == ""
