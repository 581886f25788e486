"""Training orchestration without Prefect: one model's run (autoencoder stage, QA stage, test, bundle,
registration) and the configured model with its comparison models (by default the question-only
baseline) under one parent run.

Plain Python so torchrun ranks (cli.distributed) can call it; under DDP every rank trains, and
rank 0 alone tracks, evaluates on test, logs and registers.
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import Any, Callable

from configs.errors import UserError
from configs.loader import config_to_yaml, flatten
from configs.schema import ModelConfig, PipelineConfig
from models.registry import build_autoencoder, count_parameters, model_entry, model_names
from tasks.device import resolve_device, tune_kernels_for
from tasks.progress import Progress
from tasks.text.annotations import load_annotations
from tasks.tracking.mlflow_adapter import (NullTracker, Tracker, git_commit, open_tracker,
                                           prefect_flow_run_id)
from tasks.tracking.plots import accuracy_by_type, labelled_grid, training_curves
from tasks.train.autoencoder import autoencoder_loss_fn, autoencoder_val_loss, reconstruction_samples
from tasks.train.checkpoints import training_dir
from tasks.train.data import QAData, load_qa_data
from tasks.train.factory import make_model
from tasks.train.distributed import DistContext
from tasks.train.evaluate import evaluate, predictions_table
from tasks.train.precision import precision_name
from tasks.train.publish import log_bundle, log_lineage, register
from tasks.train.targets import ensure_targets
from tasks.train.loop import StageResult, qa_loss_fn, qa_validator, run_stage

BASELINE_MODEL = "question_only"  # the language-prior floor every video model is compared with
TrainOne = Callable[[PipelineConfig, "str | None", "str | None"], dict]

BY_TYPE_PLOT = "plots/test_acc_by_type.png"


def _logger() -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run's logger inside a flow (lines show in the UI); a plain logger in torchrun ranks."""
    try:
        from prefect import get_run_logger
        from prefect.exceptions import MissingContextError
    except ImportError:  # pragma: no cover - prefect is a dependency; ranks may still run without it
        return logging.getLogger("msvqa.train")
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("msvqa.train")


def _speed(config: PipelineConfig, device: str) -> dict[str, Any]:
    """Loader workers, bf16 autocast (CUDA: train.amp, default on; CPU: train.amp_cpu, default off), compile."""
    train = config.train
    amp = train.amp if device.startswith("cuda") else train.amp_cpu
    return {"num_workers": train.num_workers, "amp": amp, "compile": train.compile}


def _log_epochs(tracker: Tracker | NullTracker, run_id: str):
    logger = _logger()

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        tracker.log_metrics(run_id, metrics, step=epoch)
        logger.info("%s epoch %d: %s", run_id[:8], epoch + 1, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))

    return on_epoch


def _step_progress(model: str, stage: str, ctx: DistContext) -> Progress | contextlib.nullcontext:
    """Steps of the running epoch (thousands at small batches on the real data): rank 0 only."""
    if not ctx.is_main:
        return contextlib.nullcontext()
    return Progress(f"{model} {stage}", unit="steps of this epoch",
                    artifact_key=f"train-{model}-{stage}-steps".replace("_", "-"))


def _autoencoder_stage(config: PipelineConfig, data: QAData, model, tracker, run_id: str, device: str, ckpt: Path,
                       ctx: DistContext, model_name: str) -> StageResult:
    stage, speed = config.train.autoencoder, _speed(config, device)
    autoencoder = build_autoencoder(model, config.model, config.clips.frames_per_clip).to(device)
    size = config.model.decoder_size
    val = data.splits["val"]

    def validate() -> dict[str, float]:
        return {"ae_val_loss": autoencoder_val_loss(autoencoder, val, stage.batch_size, size, device,
                                                    speed["num_workers"], speed["amp"], ctx)}

    # The answer head gets no gradient in this stage, so DDP must expect unused parameters.
    with _step_progress(model_name, "autoencoder", ctx) as progress:
        result = run_stage(name="ae", model=autoencoder, loss_fn=autoencoder_loss_fn(size),
                           train_set=data.splits["train"], validate=validate, monitor="ae_val_loss",
                           higher_is_better=False, cfg=stage, device=device, checkpoint_dir=ckpt / "autoencoder",
                           seed=config.train.seed, on_epoch=_log_epochs(tracker, run_id), progress=progress, ctx=ctx,
                           unused_parameters=True, **speed)
    if ctx.is_main:
        samples, video_ids = reconstruction_samples(autoencoder, val if len(val) else data.splits["train"], size,
                                                    device)
        for name, rows in samples.items():  # rows alternate: a video's input clips, then their decoding
            row_labels = [f"video {video_ids[i // 2] if video_ids[i // 2] is not None else i // 2 + 1} "
                          f"{'decoded' if i % 2 else 'input'}" for i in range(rows.shape[0])]
            column_labels = [f"clip {j + 1}\nframe 1" for j in range(rows.shape[1])]
            figure = labelled_grid(rows, row_labels, column_labels, title=f"{name}: input / decoded")
            tracker.log_figure(run_id, figure, f"reconstructions/reconstruction_{name}.png")
    return result


def _set_backbones_trainable(model, stage: str, model_cfg: ModelConfig) -> None:
    """MSVQA's backbones train only in the stages `model.train_backbones` names."""
    if hasattr(model, "set_backbones_trainable"):
        model.set_backbones_trainable(stage in model_cfg.train_backbones)


def _train_qa(config: PipelineConfig, data: QAData, qa_data: QAData, model_cfg: ModelConfig, tracker, run_id: str,
              device: str, with_autoencoder: bool, ctx: DistContext) -> tuple[Any, dict[str, list], StageResult]:
    """Stage one on `data` (with targets or clips), stage two on `qa_data` (what the QA stage reads)."""
    ckpt = training_dir(config, data, model_cfg)
    model = make_model(model_cfg, config, data, config.train.seed).to(device)
    total, trainable = count_parameters(model)
    tracker.log_params(run_id, {"parameters": total, "trainable_parameters": trainable, "checkpoint_dir": str(ckpt),
                                "world_size": ctx.world_size})
    histories: dict[str, list] = {}
    if with_autoencoder:
        _set_backbones_trainable(model, "autoencoder", model_cfg)
        histories["autoencoder"] = _autoencoder_stage(config, data, model, tracker, run_id, device, ckpt, ctx,
                                                      model_cfg.name).history
    _set_backbones_trainable(model, "qa", model_cfg)
    stage, speed = config.train.qa, _speed(config, device)
    validate = qa_validator(model, qa_data.splits["val"], stage.batch_size, device, speed["num_workers"],
                            speed["amp"], ctx)
    with _step_progress(model_cfg.name, "qa", ctx) as progress:
        result = run_stage(name="qa", model=model, loss_fn=qa_loss_fn(model_cfg.alpha, model_cfg.beta),
                           train_set=qa_data.splits["train"], validate=validate, monitor="val_acc",
                           higher_is_better=True, cfg=stage, device=device, checkpoint_dir=ckpt / "qa",
                           seed=config.train.seed, on_epoch=_log_epochs(tracker, run_id), progress=progress,
                           ctx=ctx, **speed)
    histories["qa"] = [dict(row) for row in result.history]
    best = next((row for row in result.history if row["epoch"] == result.best_epoch), {})
    tracker.log_metrics(run_id, {"best_val_acc": result.best_metric, "best_epoch": result.best_epoch,
                                 "stopped_early": float(result.stopped_early),
                                 **{f"best_{k}": v for k, v in best.items() if k.startswith("val_acc_")}})
    return model, histories, result


def _test(config: PipelineConfig, data: QAData, model, tracker, run_id: str, device: str,
          prefix: str = "") -> tuple[float, dict[str, float], dict[str, int]]:
    test = data.splits["test"]
    speed = _speed(config, device)
    result = evaluate(model, test, config.train.qa.batch_size, device, num_workers=speed["num_workers"],
                      amp=speed["amp"])
    by_type = result.by_type()
    tracker.log_metrics(run_id, {f"{prefix}test_acc": result.accuracy,
                                 **{f"{prefix}test_acc_{t}": acc for t, acc in by_type.items()}})
    records = {r.id: (r.question, r.answer) for r in load_annotations(Path(config.dataset.root) / "test_qa.json")}
    table = predictions_table(result, test, data.vocab.answer_words, records)
    tracker.log_table(run_id, table, "predictions/test_predictions.csv")
    tracker.log_table(run_id, table, "predictions/test_predictions.parquet")
    return result.accuracy, by_type, result.counts_by_type()


def train_model(config: PipelineConfig, parent_run_id: str | None, model_name: str | None = None, *,
                ctx: DistContext = DistContext(), device: str | None = None, run_name: str | None = None) -> dict:
    """Train one model (its own MLflow run under `parent_run_id`) and evaluate it on test; returns its figures.

    The run is named `run_name`, by default the model's name (an ablation names its variants).

    Under DDP every rank must call this; only rank 0's figures are meaningful.
    """
    model_cfg = config.model if model_name is None else config.model.model_copy(update={"name": model_name})
    entry = model_entry(model_cfg.name)
    device = device or resolve_device(config.train.device)
    tune_kernels_for(device)
    with_ae = entry.uses_video and config.train.autoencoder.epochs > 0
    data = training_data(config, entry.uses_video, entry.uses_clips, with_ae, ctx)
    qa_data = data.for_qa(clips=entry.uses_clips)  # a feature model's QA stage and test read no clip rows
    tracker = open_tracker(config.tracking, config.dataset.name) if ctx.is_main else NullTracker()
    tags = {"stage": "train", "model": model_cfg.name, "git.commit": git_commit(),
            "mlflow.source.git.commit": git_commit(), "prefect.flow_run_id": prefect_flow_run_id(),
            "precision": precision_name(device, _speed(config, device)["amp"]),
            **{f"spec.{k}": v for k, v in data.spec_hashes.items()}}
    run_id = tracker.start_run(run_name or model_cfg.name, tags=tags, parent_run_id=parent_run_id)
    figures: dict[str, Any] = {"val_acc": math.nan, "test_acc": math.nan, "test_acc_by_type": {}, "counts_by_type": {}}
    try:
        run_config = config.model_copy(update={"model": model_cfg})
        tracker.log_params(run_id, flatten(run_config.model_dump(mode="json")))
        tracker.log_text(run_id, config_to_yaml(run_config), "config.yaml")
        tracker.log_metrics(run_id, {f"questions_{s}": len(d) for s, d in data.splits.items()}
                            | {f"dropped_{s}": n for s, n in data.dropped.items()})
        if ctx.is_main:
            log_lineage(tracker, run_id, config, data)
        monitor = config.tracking.system_metrics
        with tracker.system_metrics(run_id) if monitor else contextlib.nullcontext():
            model, histories, result = _train_qa(config, data, qa_data, model_cfg, tracker, run_id, device, with_ae,
                                                 ctx)
        figures["histories"] = histories
        if ctx.is_main:
            acc, by_type, counts = _test(config, qa_data, model, tracker, run_id, device)
            figures.update(val_acc=result.best_metric, test_acc=acc, test_acc_by_type=by_type, counts_by_type=counts)
            tracker.log_figure(run_id, training_curves(histories), "plots/training_curves.png")
            tracker.log_figure(run_id, accuracy_by_type({model_cfg.name: by_type}, counts), BY_TYPE_PLOT)
            tracker.log_text(run_id, data.vocab.to_json(), "vocab/vocab.json")
            metrics = {"val_acc": result.best_metric, "test_acc": acc,
                       **{f"test_acc_{t}": a for t, a in by_type.items()}}
            bundle = log_bundle(tracker, run_id, config, data, model, metrics)
            if config.tracking.register_model:
                figures.update(register(tracker, run_id, config, model_cfg, data, model, metrics, bundle))
        tracker.end_run(run_id)
    except BaseException:
        tracker.end_run(run_id, failed=True)
        raise  # under torchrun, a failed rank makes torchrun stop the others
    ctx.barrier()  # the other ranks wait while rank 0 evaluates and logs
    return {"run_id": run_id, "model": model_cfg.name, **figures}


def training_data(config: PipelineConfig, uses_video: bool, uses_clips: bool, with_autoencoder: bool,
                  ctx: DistContext = DistContext()) -> QAData:
    """The store's data for one model; with the autoencoder stage, its stored targets are built first.

    Every way of training (the flows, the ablation, torchrun ranks) comes through here, so the targets
    are built once, on rank 0, before any rank reads the snapshot it will train on.
    """
    if with_autoencoder:
        ensure_targets(config, ctx, prefect_flow_run_id() or None)
    return load_qa_data(config, with_video=uses_video, with_clips=uses_clips, with_targets=with_autoencoder,
                        ranks_here=ctx.local_world_size)


def comparison_models(config: PipelineConfig) -> list[str]:
    """`train.compare_with` in order, without duplicates or the configured model itself, and without
    question_only when `train.baseline` is false; an unknown name is a UserError before anything trains."""
    known = model_names()
    names: list[str] = []
    for name in config.train.compare_with:
        if name not in known:
            raise UserError(f"train.compare_with: unknown model {name!r}; known: {', '.join(known)}.")
        if name != config.model.name and name not in names and (config.train.baseline or name != BASELINE_MODEL):
            names.append(name)
    return names


def train_with_baseline(config: PipelineConfig, parent_run_id: str | None = None, *,
                        train_one: TrainOne | None = None, ctx: DistContext | None = None,
                        device: str | None = None) -> dict:
    """The configured model, then each comparison model (`train.compare_with`), under one parent run.

    `train_one(config, parent_run_id, model_name)` trains one model (the flow passes its Prefect task);
    by default `train_model` runs in this process, as a torchrun rank when `ctx` is given.
    """
    ctx = ctx or DistContext()
    model_entry(config.model.name)  # a typo in model.name or compare_with fails before the first run starts
    compare = comparison_models(config)
    tracker = open_tracker(config.tracking, config.dataset.name) if ctx.is_main else NullTracker()
    own_parent = parent_run_id is None
    if own_parent:
        parent_run_id = tracker.start_run("train", tags={"stage": "train", "git.commit": git_commit(),
                                                         "prefect.flow_run_id": prefect_flow_run_id()})
        tracker.log_text(parent_run_id, config_to_yaml(config), "config.yaml")

    def train(model_name: str | None = None) -> dict:
        if train_one is not None:
            return train_one(config, parent_run_id, model_name)
        return train_model(config, parent_run_id, model_name, ctx=ctx, device=device)

    try:
        main = train()
        others = {name: train(name) for name in compare}
        summary = {"train_run_id": main["run_id"], "val_acc": main["val_acc"], "test_acc": main["test_acc"],
                   "test_acc_by_type": main["test_acc_by_type"]}
        if own_parent:
            summary["run_id"] = parent_run_id
        metrics = {"test_acc": main["test_acc"], **{f"test_acc_{t}": a for t, a in main["test_acc_by_type"].items()}}
        bars = {config.model.name: main["test_acc_by_type"]}
        summary.update({k: main[k] for k in ("registered_model", "version", "counts_by_type") if k in main})
        summary["comparisons"] = {name: {k: run[k] for k in ("test_acc", "test_acc_by_type", "val_acc", "run_id")}
                                  for name, run in others.items()}
        for name, run in others.items():
            metrics[f"{name}_test_acc"] = run["test_acc"]
            bars[name] = run["test_acc_by_type"]
        if baseline := others.get(BASELINE_MODEL):
            summary["baseline_test_acc"] = baseline["test_acc"]
            summary["baseline_test_acc_by_type"] = baseline["test_acc_by_type"]
            summary["baseline_run_id"] = baseline["run_id"]
            metrics["baseline_test_acc"] = baseline["test_acc"]
        if ctx.is_main:
            tracker.log_metrics(parent_run_id, metrics)
            # On the parent and on the model's own run (replacing its single-model chart) once the others are known.
            for run_id in {parent_run_id, main["run_id"]} - {""}:
                tracker.log_figure(run_id, accuracy_by_type(bars, main["counts_by_type"]), BY_TYPE_PLOT)
            tracker.log_figure(parent_run_id, training_curves(main["histories"]), "plots/training_curves.png")
        if own_parent:
            tracker.end_run(parent_run_id)
    except BaseException:
        if own_parent:
            tracker.end_run(parent_run_id, failed=True)
        raise
    return summary
