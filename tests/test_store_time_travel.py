"""Time travel: a model trained on snapshot A still gets its own test accuracy on A after a reprocess to B."""

from __future__ import annotations

import shutil

import pytest

from configs.loader import validate_config
from tasks.ingest.synth_dataset import generate_dataset
from test_clip_store import clip_group, tiny_data
from test_reprocess import api_url  # noqa: F401  (the module's Prefect test server)


@pytest.mark.slow
def test_a_model_evaluated_on_its_snapshot_gets_its_own_test_accuracy(tmp_path, api_url):  # noqa: F811
    from mlflow.tracking import MlflowClient

    from flows.evaluate import evaluate_model_flow
    from flows.reprocess import reprocess_flow
    from storage.store import open_store

    root = tmp_path / "dataset"
    generate_dataset(root, 8, 1, width=64, height=48, frames=24, fps=8, glove_dim=8)
    data = tiny_data(tmp_path, root)
    data["train"]["baseline"] = False
    data["reprocess"] = {"retrain_min_new_videos": 1}
    data["tracking"].update(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_location=str(tmp_path / "art"))
    config = validate_config(data)

    first = reprocess_flow(config)
    assert first["retrained"] and first["new_videos"] == 8
    client = MlflowClient(config.tracking.uri)
    run_a = client.get_run(first["train"]["train_run_id"])
    snapshot_a = run_a.data.tags["store.snapshot"]
    logged_acc = run_a.data.metrics["test_acc"]  # what training measured, read back from MLflow

    # One video's file replaced by another's; the questions stay as they were.
    names = clip_group(config).attrs["names"]
    shutil.copyfile(root / "video" / f"{names[0]}.avi", root / "video" / f"{names[1]}.avi")
    second = reprocess_flow(config)
    assert (second["changed_videos"], second["annotation_files"], second["retrained"]) == (1, 0, True)
    run_b = client.get_run(second["train"]["train_run_id"])
    snapshot_b = run_b.data.tags["store.snapshot"]
    assert snapshot_b != snapshot_a
    # Epochs really ran on B (a new checkpoint key), not a resumed finished checkpoint of A.
    epochs = [m.step for m in client.get_metric_history(run_b.info.run_id, "val_acc")]
    assert len(epochs) == config.train.qa.epochs
    commits = [c["id"] for c in open_store(config.store, mode="r").log()]
    assert commits.index(snapshot_b) < commits.index(snapshot_a)  # B is newer

    on_a = config.model_copy(update={"store": config.store.model_copy(update={"snapshot": snapshot_a})})
    again = evaluate_model_flow(on_a, f"runs:/{run_a.info.run_id}")
    assert again["snapshot"] == snapshot_a == again["trained_on_snapshot"]
    assert again["test_acc"] == logged_acc
    assert again["questions"] == int(run_a.data.metrics["questions_test"])
