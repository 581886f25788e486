"""`msvqa run` end to end on the tiny config, under the Prefect test harness, twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

TINY = Path(__file__).with_name("tiny.yaml")


def tiny_config(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load(TINY.read_text())
    data["data_dir"] = str(tmp_path)
    data["dataset"]["root"] = str(tmp_path / "dataset")
    data["store"] = {"path": str(tmp_path / "store.zarr")}
    data["text"]["glove_path"] = str(tmp_path / "dataset" / "glove.txt")
    data["train"]["checkpoint_dir"] = str(tmp_path / "checkpoints")
    data["tracking"].update(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_location=str(tmp_path / "mlartifacts"))
    for key, value in changes.items():
        section, name = key.split(".")
        data[section][name] = value
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_cli(*args: str, api_url: str) -> dict:
    """The real `msvqa` entry point in its own process, reporting to the harness's Prefect API."""
    env = dict(os.environ, PREFECT_API_URL=api_url)
    result = subprocess.run([sys.executable, "-m", "cli.app", *args], capture_output=True, text=True, env=env,
                            timeout=600, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_run_end_to_end_then_resume(tmp_path):
    from mlflow.tracking import MlflowClient
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    config = tiny_config(tmp_path)
    with prefect_test_harness():
        api_url = PREFECT_API_URL.value()
        first = run_cli("run", str(config), "--json", api_url=api_url)
        # Again on the same store, training from scratch in a new checkpoint folder: a real rerun.
        second = run_cli("run", str(config), "--set", f"train.checkpoint_dir={tmp_path / 'checkpoints-again'}",
                         "--json", api_url=api_url)
        # MSVQA end to end on the same store: the backbones train on the stored uint8 clips.
        msvqa = run_cli("train", str(config), "--set", "model.name=msvqa", "--set", "train.baseline=false",
                        "--json", api_url=api_url)
        # The trained end-to-end model answers a new question about a video, from its own bundle.
        video = sorted((tmp_path / "dataset" / "video").glob("*.avi"))[0]
        answered = run_cli("answer", "--model", f"runs:/{msvqa['train_run_id']}", "--tracking-uri",
                           first["tracking_uri"], "--video", str(video), "--question", "what color is the square?",
                           "--device", "cpu", "--json", api_url=api_url)

    assert set(first) >= {"run_id", "test_acc", "test_acc_by_type", "baseline_test_acc", "store", "tracking_uri",
                          "seconds"}
    assert set(first["test_acc_by_type"]) == {"what", "who", "how", "when", "where"}  # every type is asked
    assert first["details"]["clips"]["complete"] == 12
    assert first["details"]["clips"]["quarantined"] == 0
    # The rerun finds every video stored: nothing is decoded or extracted again. It trains again from
    # scratch, and CPU training is deterministic, so it ends with the same figures.
    assert second["details"]["clips"]["decoded_now"] == 0
    assert second["details"]["features"]["extracted_now"] == 0
    assert second["test_acc"] == first["test_acc"]
    assert second["test_acc_by_type"] == first["test_acc_by_type"]
    assert second["baseline_test_acc"] == first["baseline_test_acc"]

    client = MlflowClient(tracking_uri=first["tracking_uri"])
    parent = client.get_run(first["run_id"])
    assert parent.data.metrics["test_acc"] == pytest.approx(first["test_acc"])
    assert parent.data.params["model.name"] == "dualvgr"
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{first['run_id']}'")
    assert sorted(run.info.run_name for run in children) == ["dualvgr", "question_only"]
    dualvgr = next(run for run in children if run.info.run_name == "dualvgr")
    assert {"ae_val_loss", "qa_train_loss", "val_acc", "test_acc"} <= set(dualvgr.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(dualvgr.info.run_id)}
    assert {"plots", "predictions", "reconstructions", "vocab", "bundle"} <= artifacts
    # The reported accuracy, recomputed from the logged predictions against the answers as written in
    # the annotation files (unknown answers can never be predicted, so they count as wrong).
    import pandas as pd

    table = pd.read_csv(client.download_artifacts(dualvgr.info.run_id, "predictions/test_predictions.csv",
                                                  str(tmp_path)))
    answers = {row["id"]: row["answer"] for row in json.loads((tmp_path / "dataset" / "test_qa.json").read_text())}
    hits = table["prediction"] == table["question_id"].map(answers)
    assert len(table) == len(answers)
    assert first["test_acc"] == pytest.approx(hits.mean())
    by_type = hits.groupby(table["qtype"]).mean().to_dict()
    assert first["test_acc_by_type"] == pytest.approx(by_type)

    run = client.get_run(msvqa["train_run_id"])
    assert run.info.run_name == "msvqa" and run.data.params["model.name"] == "msvqa"
    assert run.data.metrics["test_acc"] == pytest.approx(msvqa["test_acc"])
    assert {"ae_val_loss", "val_acc", "test_acc"} <= set(run.data.metrics)
    # Trainable backbones: MSVQA has more trainable parameters than DualVGR on cached features.
    assert float(run.data.params["trainable_parameters"]) > float(dualvgr.data.params["trainable_parameters"])
    assert run.data.tags["bundle_artifact"] == "bundle/bundle.pt"
    assert answered["model"] == f"runs:/{msvqa['train_run_id']}" and len(answered["answers"]) == 5
    assert 0.0 < sum(row["probability"] for row in answered["answers"]) <= 1.0 + 1e-6


def test_bad_config_exits_2_with_one_sentence(tmp_path):
    from cli.app import app

    config = tiny_config(tmp_path)
    result = CliRunner().invoke(app, ["run", str(config), "--set", "clips.num_clips=0", "--json"])
    assert result.exit_code == 2
    assert "clips.num_clips" in result.output
    assert "Traceback" not in result.output
    missing = CliRunner().invoke(app, ["text", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
