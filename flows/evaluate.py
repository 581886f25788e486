"""Evaluate flow: the configured model's best checkpoint on the test split."""

from __future__ import annotations

from prefect import flow

from configs.errors import UserError
from configs.schema import PipelineConfig
from tasks import checkpoints
from tasks.device import resolve_device
from tasks.evaluation import evaluate
from tasks.qa_setup import load_qa_data, make_model, training_dir


@flow(name="evaluate")
def evaluate_flow(config: PipelineConfig) -> dict:
    """Accuracy overall and per question type of the best checkpoint that this config trained."""
    uses_video = config.model.name != "question_only"
    data = load_qa_data(config, with_video=uses_video, with_clips=config.model.name == "msvqa")
    best = training_dir(config, data, config.model) / "qa" / "best.pt"
    if not best.exists():
        raise UserError(f"no trained checkpoint at {best}: run `msvqa train` with this config first")
    device = resolve_device(config.train.device)
    model = make_model(config.model, config, data, config.train.seed)
    model.load_state_dict(checkpoints.load(best)["model"])
    result = evaluate(model.to(device), data.splits["test"], config.train.qa.batch_size, device)
    return {"model": config.model.name, "checkpoint": str(best), "test_acc": result.accuracy,
            "test_acc_by_type": result.by_type(), "questions": len(data.splits["test"]),
            "dropped": data.dropped["test"]}
