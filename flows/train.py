"""Train flow: autoencoder stage, QA stage, test evaluation and the question-only baseline, all in MLflow."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from configs.loader import config_to_yaml, flatten
from configs.schema import PipelineConfig
from models.registry import build_autoencoder, count_parameters
from tasks.autoencoder import autoencoder_loss_fn, autoencoder_val_loss, reconstruction_samples
from tasks.device import resolve_device
from tasks.evaluation import evaluate, predictions_table
from tasks.plots import accuracy_by_type, image_grid, save_png, training_curves
from tasks.qa_setup import QAData, load_qa_data, make_model, training_dir
from tasks.text import load_annotations
from tasks.tracking import Tracker, open_tracker
from tasks.training import StageResult, qa_loss_fn, qa_validator, run_stage


@dataclass
class TrainedModel:
    run_id: str
    val_acc: float
    test_acc: float
    test_acc_by_type: dict[str, float]
    counts_by_type: dict[str, int]
    histories: dict[str, list[dict[str, float]]]


def _log_epochs(tracker: Tracker, run_id: str):
    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        tracker.log_metrics(run_id, metrics, step=epoch)
        get_run_logger().info("%s epoch %d: %s", run_id[:8], epoch + 1,
                              ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))

    return on_epoch


def _autoencoder_stage(config: PipelineConfig, data: QAData, model, tracker: Tracker, run_id: str,
                       device: str, ckpt: Path) -> StageResult:
    stage = config.train.autoencoder
    autoencoder = build_autoencoder(model, config.model, config.clips.frames_per_clip).to(device)
    size = config.model.decoder_size
    val = data.splits["val"]

    def validate() -> dict[str, float]:
        return {"ae_val_loss": autoencoder_val_loss(autoencoder, val, stage.batch_size, size, device)}

    result = run_stage(name="ae", model=autoencoder, loss_fn=autoencoder_loss_fn(size), train_set=data.splits["train"],
                       validate=validate, monitor="ae_val_loss", higher_is_better=False, cfg=stage, device=device,
                       checkpoint_dir=ckpt / "autoencoder", seed=config.train.seed,
                       num_workers=config.train.num_workers, on_epoch=_log_epochs(tracker, run_id))
    samples = reconstruction_samples(autoencoder, val if len(val) else data.splits["train"], size, device)
    with tempfile.TemporaryDirectory() as tmp:
        for name, rows in samples.items():
            path = Path(tmp) / f"reconstruction_{name}.png"
            save_png(image_grid(rows), path)  # rows alternate: input clips, then their reconstruction
            tracker.log_artifact(run_id, path, "reconstructions")
    return result


def _train_qa(config: PipelineConfig, data: QAData, model_cfg, tracker: Tracker, run_id: str,
              device: str, with_autoencoder: bool) -> tuple[object, dict[str, list]]:
    ckpt = training_dir(config, data, model_cfg)
    model = make_model(model_cfg, config, data, config.train.seed).to(device)
    total, trainable = count_parameters(model)
    tracker.log_params(run_id, {"parameters": total, "trainable_parameters": trainable, "checkpoint_dir": str(ckpt)})
    histories: dict[str, list] = {}
    if with_autoencoder:
        histories["autoencoder"] = _autoencoder_stage(config, data, model, tracker, run_id, device, ckpt).history
    stage = config.train.qa
    validate = qa_validator(model, data.splits["val"], stage.batch_size, device)
    result = run_stage(name="qa", model=model, loss_fn=qa_loss_fn(model_cfg.alpha, model_cfg.beta),
                       train_set=data.splits["train"], validate=validate, monitor="val_acc", higher_is_better=True,
                       cfg=stage, device=device, checkpoint_dir=ckpt / "qa", seed=config.train.seed,
                       num_workers=config.train.num_workers, on_epoch=_log_epochs(tracker, run_id))
    histories["qa"] = [{k: v for k, v in row.items()} for row in result.history]
    tracker.log_metrics(run_id, {"best_val_acc": result.best_metric, "best_epoch": result.best_epoch})
    return model, histories


def _test(config: PipelineConfig, data: QAData, model, tracker: Tracker, run_id: str, device: str,
          prefix: str = "") -> tuple[float, dict[str, float], dict[str, int]]:
    test = data.splits["test"]
    result = evaluate(model, test, config.train.qa.batch_size, device)
    by_type = result.by_type()
    tracker.log_metrics(run_id, {f"{prefix}test_acc": result.accuracy,
                                 **{f"{prefix}test_acc_{t}": acc for t, acc in by_type.items()}})
    records = {r.id: (r.question, r.answer) for r in load_annotations(Path(config.dataset.root) / "test_qa.json")}
    table = predictions_table(result, test, data.vocab.answer_words, records)
    tracker.log_table(run_id, table, "predictions/test_predictions.csv")
    return result.accuracy, by_type, result.counts_by_type()


@task(name="train-model", cache_policy=NO_CACHE)
def train_model_task(config: PipelineConfig, parent_run_id: str, model_name: str | None = None) -> dict:
    """Train one model (its own child run) and evaluate it on test; returns its figures."""
    model_cfg = config.model if model_name is None else config.model.model_copy(update={"name": model_name})
    uses_video = model_cfg.name != "question_only"
    device = resolve_device(config.train.device)
    data = load_qa_data(config, with_video=uses_video, with_clips=uses_video and config.train.autoencoder.epochs > 0)
    tracker = open_tracker(config.tracking, config.dataset.name)
    run_id = tracker.start_run(model_cfg.name, tags={"stage": "train", "model": model_cfg.name,
                                                     **{f"spec.{k}": v for k, v in data.spec_hashes.items()}},
                               parent_run_id=parent_run_id)
    try:
        tracker.log_params(run_id, flatten(config.model_copy(update={"model": model_cfg}).model_dump(mode="json")))
        tracker.log_metrics(run_id, {f"questions_{s}": len(d) for s, d in data.splits.items()}
                            | {f"dropped_{s}": n for s, n in data.dropped.items()})
        with_ae = uses_video and config.train.autoencoder.epochs > 0
        model, histories = _train_qa(config, data, model_cfg, tracker, run_id, device, with_ae)
        acc, by_type, counts = _test(config, data, model, tracker, run_id, device)
        tracker.log_figure(run_id, training_curves(histories), "plots/training_curves.png")
        tracker.log_text(run_id, data.vocab.to_json(), "vocab/vocab.json")
        val_acc = max((row["val_acc"] for row in histories["qa"]), default=float("nan"))
        if config.tracking.register_model:
            tracker.log_model(run_id, model, registered_name=f"{config.dataset.name}-{model_cfg.name}",
                              metadata={"spec_hashes": data.spec_hashes, "val_acc": val_acc})
        tracker.end_run(run_id)
    except BaseException:
        tracker.end_run(run_id, failed=True)
        raise
    return {"run_id": run_id, "model": model_cfg.name, "val_acc": val_acc, "test_acc": acc,
            "test_acc_by_type": by_type, "counts_by_type": counts, "histories": histories}


def train_flow_body(config: PipelineConfig, parent_run_id: str | None = None) -> dict:
    tracker = open_tracker(config.tracking, config.dataset.name)
    own_parent = parent_run_id is None
    if own_parent:
        parent_run_id = tracker.start_run("train", tags={"stage": "train"})
        tracker.log_text(parent_run_id, config_to_yaml(config), "config.yaml")
    try:
        main = train_model_task(config, parent_run_id)
        baseline = train_model_task(config, parent_run_id, "question_only") if config.train.baseline else None
        summary = {"train_run_id": main["run_id"], "val_acc": main["val_acc"], "test_acc": main["test_acc"],
                   "test_acc_by_type": main["test_acc_by_type"]}
        metrics = {"test_acc": main["test_acc"], **{f"test_acc_{t}": a for t, a in main["test_acc_by_type"].items()}}
        bars = {config.model.name: main["test_acc_by_type"]}
        if baseline:
            summary["baseline_test_acc"] = baseline["test_acc"]
            summary["baseline_run_id"] = baseline["run_id"]
            metrics["baseline_test_acc"] = baseline["test_acc"]
            bars["question_only"] = baseline["test_acc_by_type"]
        tracker.log_metrics(parent_run_id, metrics)
        tracker.log_figure(parent_run_id, accuracy_by_type(bars, main["counts_by_type"]), "plots/test_acc_by_type.png")
        tracker.log_figure(parent_run_id, training_curves(main["histories"]), "plots/training_curves.png")
        if own_parent:
            tracker.end_run(parent_run_id)
    except BaseException:
        if own_parent:
            tracker.end_run(parent_run_id, failed=True)
        raise
    return summary


@flow(name="train")
def train_flow(config: PipelineConfig) -> dict:
    """Train the configured model (and the question-only baseline) from the store, evaluate on test."""
    return train_flow_body(config)
