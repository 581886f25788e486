"""Evaluate flows: the configured model's best checkpoint, or any logged or registered model, on the test split."""

from __future__ import annotations

from prefect import flow

from configs.errors import UserError
from configs.schema import PipelineConfig
from flows.naming import flow_run_name
from models.registry import model_entry
from tasks.device import resolve_device
from tasks.serving.inference import open_bundle
from tasks.tracking.artifacts import is_mlflow_uri, model_run
from tasks.train import checkpoints
from tasks.train.data import load_qa_data
from tasks.train.evaluate import evaluate
from tasks.train.factory import make_model


@flow(name="evaluate", flow_run_name=flow_run_name)
def evaluate_flow(config: PipelineConfig) -> dict:
    """Accuracy overall and per question type of the best checkpoint that this config trained."""
    entry = model_entry(config.model.name)
    data = load_qa_data(config, with_video=entry.uses_video, with_clips=entry.uses_clips)
    best = checkpoints.training_dir(config, data, config.model) / "qa" / "best.pt"
    if not best.exists():
        raise UserError(f"no trained checkpoint at {best}: run `msvqa train` with this config first")
    device = resolve_device(config.train.device)
    model = make_model(config.model, config, data, config.train.seed)
    model.load_state_dict(checkpoints.load(best)["model"])
    result = evaluate(model.to(device), data.splits["test"], config.train.qa.batch_size, device,
                      num_workers=config.train.num_workers)
    return {"model": config.model.name, "checkpoint": str(best), "snapshot": data.snapshot,
            "test_acc": result.accuracy, "test_acc_by_type": result.by_type(), "questions": len(data.splits["test"]),
            "dropped": data.dropped["test"]}


@flow(name="evaluate-model", flow_run_name=flow_run_name)
def evaluate_model_flow(config: PipelineConfig, model_uri: str) -> dict:
    """A logged or registered model (runs:/ID, models:/NAME@alias, a bundle file) on the configured snapshot.

    The model's own settings name the groups it reads (text, clips, features); the config gives the store,
    its snapshot (store.snapshot: the tip when unset), the dataset folder and the evaluation settings.
    """
    bundle = open_bundle(model_uri, config.tracking.uri)
    trained_on = model_run(model_uri, config.tracking.uri)[1].get("store.snapshot") if is_mlflow_uri(model_uri) \
        else None
    own = bundle.config
    run_config = own.model_copy(update={"store": config.store, "dataset": config.dataset, "train": config.train,
                                        "tracking": config.tracking})
    data = load_qa_data(run_config, with_video=bundle.uses_video, with_clips=bundle.uses_clips)
    if data.text.ref.spec_hash != bundle.spec_hashes.get("text", data.text.ref.spec_hash):
        raise UserError(f"dataset.root {config.dataset.root}: its annotations or text settings differ from those model "
                        f"{model_uri} was trained on (text group {bundle.spec_hashes['text']}, here "
                        f"{data.text.ref.spec_hash}), so its vocabulary does not fit")
    device = resolve_device(config.train.device)
    result = evaluate(bundle.model.to(device), data.splits["test"], own.train.qa.batch_size, device,
                      num_workers=config.train.num_workers)
    return {"model": model_uri, "model_name": own.model.name, "snapshot": data.snapshot,
            "trained_on_snapshot": trained_on, "test_acc": result.accuracy, "test_acc_by_type": result.by_type(),
            "questions": len(data.splits["test"]), "dropped": data.dropped["test"]}
