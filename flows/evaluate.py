"""Evaluate flow: the configured model's best checkpoint on the test split."""

from __future__ import annotations

from prefect import flow

from configs.errors import UserError
from configs.schema import PipelineConfig
from flows.naming import flow_run_name
from models.registry import model_entry
from tasks.device import resolve_device
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
    result = evaluate(model.to(device), data.splits["test"], config.train.qa.batch_size, device)
    return {"model": config.model.name, "checkpoint": str(best), "test_acc": result.accuracy,
            "test_acc_by_type": result.by_type(), "questions": len(data.splits["test"]),
            "dropped": data.dropped["test"]}
