"""`msvqa ablate`: four sibling runs under one parent, their figures, the comparison artifacts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from tasks.train.ablation import VARIANTS, markdown_table, summarise

TINY = Path(__file__).with_name("tiny.yaml")
NAMES = ["dualvgr", "msvqa_no_ae", "msvqa", "question_only"]


def test_summary_over_seeds_is_the_mean_and_sample_spread() -> None:
    results = [{"run_id": "a", "val_acc": 0.4, "test_acc": 0.5, "test_acc_by_type": {"what": 0.25, "who": 1.0}},
               {"run_id": "b", "val_acc": 0.6, "test_acc": 0.7, "test_acc_by_type": {"what": 0.75, "who": 1.0}}]
    run = summarise(VARIANTS[1], results, [3, 4])
    assert (run["name"], run["model"], run["autoencoder"], run["seeds"]) == ("msvqa_no_ae", "msvqa", False, [3, 4])
    assert run["test_acc_mean"] == run["test_acc"] == pytest.approx(0.6)
    assert run["test_acc_std"] == pytest.approx(math.sqrt(0.02))  # sample sd of {0.5, 0.7}
    assert run["test_acc_by_type"] == pytest.approx({"what": 0.5, "who": 1.0})
    assert run["test_acc_by_type_std"]["what"] == pytest.approx(math.sqrt(0.125))
    assert run["val_acc_mean"] == pytest.approx(0.5)
    assert summarise(VARIANTS[0], results[:1], [0])["test_acc_std"] == 0.0
    assert "| msvqa_no_ae | 0.600 ± 0.141 | 0.500 ± 0.354 | 1.000 ± 0.000 |" in markdown_table([run])


def _tiny_config(tmp_path: Path) -> Path:
    data = yaml.safe_load(TINY.read_text())
    data["data_dir"] = str(tmp_path)
    data["dataset"]["root"] = str(tmp_path / "dataset")
    data["store"] = {"path": str(tmp_path / "store.zarr")}
    data["text"]["glove_path"] = str(tmp_path / "dataset" / "glove.txt")
    data["train"].update(checkpoint_dir=str(tmp_path / "checkpoints"), qa={"epochs": 1, "batch_size": 8, "lr": 0.001})
    data["tracking"].update(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_location=str(tmp_path / "mlartifacts"))
    data["runner"] = {"kind": "local"}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_ablate_trains_four_sibling_runs_under_one_parent(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient
    from prefect.testing.utilities import prefect_test_harness

    from cli.app import app

    with prefect_test_harness():
        result = CliRunner().invoke(app, ["ablate", str(_tiny_config(tmp_path)), "--json"])
    assert result.exit_code == 0, result.output[-3000:]
    summary = json.loads([line for line in result.output.splitlines() if line.startswith("{")][-1])

    assert [run["name"] for run in summary["runs"]] == NAMES
    for run in summary["runs"]:
        assert {"name", "test_acc", "test_acc_by_type", "seeds", "test_acc_mean", "test_acc_std"} <= set(run)
        assert 0.0 <= run["test_acc"] <= 1.0 and run["seeds"] == [0] and run["test_acc_std"] == 0.0
        assert set(run["test_acc_by_type"]) <= {"what", "who", "where", "how", "when"}

    client = MlflowClient(summary["tracking_uri"])
    parent = client.get_run(summary["run_id"])
    assert parent.info.run_name == "ablate"
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{summary['run_id']}'")
    by_name = {run.info.run_name: run for run in children}
    assert len(children) == 4 and set(by_name) == set(NAMES)
    for run in summary["runs"]:
        child = by_name[run["name"]]
        assert child.info.run_id == run["run_ids"][0] and child.info.status == "FINISHED"
        assert child.data.metrics["test_acc"] == pytest.approx(run["test_acc"])
    # msvqa_no_ae is MSVQA with its stage 1 off; only the runs with stage 1 log reconstructions.
    assert by_name["msvqa_no_ae"].data.tags["model"] == "msvqa" == by_name["msvqa"].data.tags["model"]
    assert by_name["msvqa_no_ae"].data.params["train.autoencoder.epochs"] == "0"
    assert by_name["msvqa"].data.params["train.autoencoder.epochs"] == "1"
    reconstructions = {name: [a.path for a in client.list_artifacts(run.info.run_id, "reconstructions")]
                       for name, run in by_name.items()}
    assert reconstructions["msvqa"] and not reconstructions["msvqa_no_ae"]

    artifacts = {a.path for d in ("plots", "ablation") for a in client.list_artifacts(summary["run_id"], d)}
    assert {"plots/ablation.png", "ablation/ablation.csv", "ablation/ablation.md"} <= artifacts
    table = pd.read_csv(client.download_artifacts(summary["run_id"], "ablation/ablation.csv", str(tmp_path)))
    assert table["variant"].tolist() == NAMES
    assert table["test_acc_mean"].tolist() == pytest.approx([run["test_acc"] for run in summary["runs"]])
    # An ablation never registers a model, so no `champion` alias moves.
    assert client.search_registered_models() == []
