"""`train.compare_with`: comparison models as sibling runs under the training parent, checked before training."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from configs.errors import UserError
from configs.loader import resolve_paths, validate_config
from configs.schema import PipelineConfig

TINY = Path(__file__).with_name("tiny.yaml")


def tiny(tmp_path: Path, model: str = "msvqa", **train) -> PipelineConfig:
    data = yaml.safe_load(TINY.read_text())
    data["model"]["name"] = model
    data["train"].update(train, checkpoint_dir=str(tmp_path / "ckpt"))
    data["tracking"].update(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_location=str(tmp_path / "art"))
    return resolve_paths(validate_config(data), tmp_path)


def test_default_compares_with_the_question_only_model_only(tmp_path):
    from tasks.train.run import comparison_models

    assert comparison_models(tiny(tmp_path)) == ["question_only"]
    assert comparison_models(tiny(tmp_path, baseline=False)) == []


def test_comparisons_keep_their_order_without_repeats_or_the_model_itself(tmp_path):
    from tasks.train.run import comparison_models

    listed = ["dualvgr", "question_only", "dualvgr", "msvqa"]
    assert comparison_models(tiny(tmp_path, compare_with=listed)) == ["dualvgr", "question_only"]
    assert comparison_models(tiny(tmp_path, model="dualvgr", compare_with=listed)) == ["question_only", "msvqa"]
    # train.baseline=false still drops the question-only floor, as it did before compare_with existed.
    assert comparison_models(tiny(tmp_path, compare_with=listed, baseline=False)) == ["dualvgr"]


def test_an_unknown_comparison_model_fails_before_any_run_starts(tmp_path):
    from tasks.train.run import train_with_baseline

    calls = []
    config = tiny(tmp_path, compare_with=["dualvgr", "dualvrg"])
    with pytest.raises(UserError, match=r"train\.compare_with: unknown model 'dualvrg'") as caught:
        train_with_baseline(config, train_one=lambda *args: calls.append(args))
    assert "question_only" in str(caught.value)  # names what is known
    assert calls == [] and not (tmp_path / "mlflow.db").exists()


def _figures(acc: float, by_type: dict[str, float]) -> dict:
    return {"val_acc": acc, "test_acc": acc, "test_acc_by_type": by_type,
            "counts_by_type": {"what": 4, "who": 6}, "histories": {"qa": [{"epoch": 0, "val_acc": acc}]}}


def test_each_comparison_lands_in_the_summary_the_parent_metrics_and_its_chart(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from tasks.train import run as train_run

    # Stand-in training runs with known figures: what matters here is how the parent gathers them.
    figures = {"msvqa": _figures(0.9, {"what": 1.0, "who": 5 / 6}),
               "dualvgr": _figures(0.7, {"what": 0.75, "who": 4 / 6}),
               "question_only": _figures(0.3, {"what": 0.25, "who": 2 / 6})}
    trained, charted = [], []
    real_chart = train_run.accuracy_by_type
    monkeypatch.setattr(train_run, "accuracy_by_type",
                        lambda bars, counts: charted.append(list(bars)) or real_chart(bars, counts))

    config = tiny(tmp_path, compare_with=["dualvgr", "question_only"])
    client = MlflowClient(config.tracking.uri)
    run_ids = {}

    def train_one(config, parent_run_id, model_name):
        name = model_name or config.model.name
        trained.append((name, parent_run_id))
        experiment = client.get_run(parent_run_id).info.experiment_id
        run_ids[name] = client.create_run(experiment, run_name=name,
                                          tags={"mlflow.parentRunId": parent_run_id}).info.run_id
        client.set_terminated(run_ids[name])
        return {"model": name, **figures[name], "run_id": run_ids[name]}

    summary = train_run.train_with_baseline(config, train_one=train_one)

    assert trained == [("msvqa", summary["run_id"]), ("dualvgr", summary["run_id"]),
                       ("question_only", summary["run_id"])]
    assert summary["test_acc"] == 0.9 and summary["train_run_id"] == run_ids["msvqa"]
    assert summary["comparisons"] == {
        "dualvgr": {"test_acc": 0.7, "test_acc_by_type": {"what": 0.75, "who": 4 / 6}, "val_acc": 0.7,
                    "run_id": run_ids["dualvgr"]},
        "question_only": {"test_acc": 0.3, "test_acc_by_type": {"what": 0.25, "who": 2 / 6}, "val_acc": 0.3,
                          "run_id": run_ids["question_only"]}}
    assert summary["baseline_test_acc"] == 0.3 and summary["baseline_run_id"] == run_ids["question_only"]
    parent = client.get_run(summary["run_id"])
    assert parent.data.metrics["dualvgr_test_acc"] == pytest.approx(0.7)
    assert parent.data.metrics["baseline_test_acc"] == pytest.approx(0.3)
    assert parent.data.metrics["test_acc"] == pytest.approx(0.9)
    assert charted and all(bars == ["msvqa", "dualvgr", "question_only"] for bars in charted)
    for run_id in (summary["run_id"], run_ids["msvqa"]):  # the parent's chart and the model's own, replaced
        assert "plots/test_acc_by_type.png" in {a.path for a in client.list_artifacts(run_id, "plots")}


def test_the_pipeline_summary_has_a_column_per_comparison_model():
    from flows.summary import pipeline_markdown

    trained = {"test_acc": 0.9, "test_acc_by_type": {"what": 1.0, "who": 0.8}, "counts_by_type": {"what": 4, "who": 6},
               "comparisons": {"dualvgr": {"test_acc": 0.7, "test_acc_by_type": {"what": 0.75}, "run_id": "d"},
                               "question_only": {"test_acc": 0.3, "test_acc_by_type": {"who": 0.5}, "run_id": "q"}}}
    lines = pipeline_markdown("d", "sqlite:///x.db", "7", "par", "msvqa", trained, {}).splitlines()
    assert "| question type | questions | msvqa | dualvgr | question-only baseline |" in lines
    assert "| **all** | 10 | 90.0% | 70.0% | 30.0% |" in lines
    assert "| what | 4 | 100.0% | 75.0% | - |" in lines and "| who | 6 | 80.0% | - | 50.0% |" in lines
    assert "- dualvgr run: `d`" in lines and "- baseline run: `q`" in lines
