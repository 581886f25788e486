"""Training loops for the two stages, resumable from their last checkpoint, deterministic on CPU.

One process or several (DDP under torchrun): each epoch's order depends on (seed, epoch) only, epoch
metrics are summed over ranks, and rank 0 alone writes checkpoints, which every rank reads back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from configs.errors import UserError
from configs.schema import StageConfig
from models.losses import answer_loss, qa_loss
from models.types import Batch
from storage.qa_dataset import collate, loader_context
from tasks.train import checkpoints
from tasks.train.distributed import DistContext, epoch_sampler, per_rank_batch, shard
from tasks.train.evaluate import evaluate
from tasks.train.metrics import accuracy_metrics
from tasks.train.precision import mixed_precision

EpochCallback = Callable[[int, dict[str, float]], None]
# loss_fn(model, batch) -> (loss, parts); parts are floats or detached scalar tensors ("correct": a count).
LossFn = Callable[[torch.nn.Module, Batch], tuple[torch.Tensor, dict[str, float | torch.Tensor]]]


@dataclass
class StageResult:
    best_metric: float
    best_epoch: int
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    best_path: Path | None = None
    stopped_early: bool = False


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0,
                num_workers: int = 0, pin_memory: bool = False, ctx: DistContext = DistContext()) -> DataLoader:
    """Shuffling comes from (seed, epoch), so a resumed epoch sees the same order; under DDP, this rank's part."""
    sampler = epoch_sampler(dataset, seed, epoch, ctx) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, collate_fn=collate,
                      num_workers=num_workers, pin_memory=pin_memory, persistent_workers=False,
                      multiprocessing_context=loader_context(num_workers, dataset))


def make_optimizer(params: list[torch.nn.Parameter], cfg: StageConfig) -> torch.optim.Adam:
    """Adam; the fused kernel (one pass over all parameters) where every parameter is a CPU/CUDA float."""
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)


def lr_at(cfg: StageConfig, epoch: int) -> float:
    """Step decay by epoch number: set directly each epoch, so no scheduler state and no scheduler warnings."""
    if not cfg.lr_decay_epochs:
        return cfg.lr
    return cfg.lr * cfg.lr_decay ** (epoch // cfg.lr_decay_epochs)


def qa_loss_fn(alpha: float = 0.0, beta: float = 0.0) -> LossFn:
    """Answer cross-entropy plus the weighted auxiliary losses the model provides.

    With alpha = beta = 0 the auxiliary losses are not computed at all: they would weigh nothing.
    """

    def loss_fn(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float | torch.Tensor]]:
        output = model(batch)
        if alpha or beta:
            total, parts = qa_loss(output, batch.answer, alpha=alpha, beta=beta)
        else:
            total = answer_loss(output.logits, batch.answer)  # logits [B, A]; autocast runs it in float32
            parts = {"answer": total.detach()}
        values: dict[str, float | torch.Tensor] = dict(parts)  # detached tensors: no device sync per step
        values["correct"] = (output.logits.argmax(-1) == batch.answer).sum()  # logits [B, A]
        return total, values

    return loss_fn


def split_batch(batch: Batch, parts: int) -> list[Batch]:
    """`batch` cut along the batch axis into up to `parts` slices of near-equal size (views, no copies)."""
    size = int(batch.question.shape[0])
    bounds = [size * i // parts for i in range(parts + 1)]
    return [Batch(**{name: value[start:end] if isinstance(value, torch.Tensor) else value
                     for name, value in batch.__dict__.items()})
            for start, end in zip(bounds, bounds[1:]) if end > start]


def train_epoch(model: torch.nn.Module, loss_fn: LossFn, loader: DataLoader, optimizer: torch.optim.Optimizer,
                params: list[torch.nn.Parameter], grad_clip: float, device: str, amp: bool = False,
                progress: Callable[[int, int], None] | None = None, accumulate: int = 1) -> tuple[float, float, float]:
    """One pass over `loader`: (sum of loss * batch size, correct answers or NaN without them, items seen).

    `accumulate`: each batch goes forward and backward in that many slices before its one optimizer step.
    Each slice's mean loss is weighted by its share of the batch, so the summed gradient is the whole
    batch's mean-loss gradient, as without slicing.
    """
    pin = device.startswith("cuda")
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    total_correct = torch.zeros((), dtype=torch.float64, device=device)
    counts_correct = False
    seen = 0
    for index, batch in enumerate(loader):
        size = int(batch.question.shape[0])
        optimizer.zero_grad(set_to_none=True)
        # Under DDP every slice's backward all-reduces the gradient accumulated so far; averaging an
        # already averaged part again leaves it unchanged, so the result is exact, if not the cheapest.
        for part in split_batch(batch, accumulate) if accumulate > 1 else [batch]:
            part = part.to(device, non_blocking=pin)
            part_size = int(part.question.shape[0])
            with mixed_precision(device, amp):
                loss, parts = loss_fn(model, part)
            (loss * (part_size / size) if part_size != size else loss).backward()
            total_loss += loss.detach().double() * part_size
            if "correct" in parts:
                total_correct += parts["correct"]
                counts_correct = True
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        seen += size
        if progress:
            progress(index + 1, len(loader))
    return float(total_loss), float(total_correct) if counts_correct else math.nan, float(seen)


def run_stage(
    *,
    name: str,
    model: torch.nn.Module,
    loss_fn: LossFn,
    train_set: Dataset,
    validate: Callable[[], dict[str, float]],
    monitor: str,
    higher_is_better: bool,
    cfg: StageConfig,
    device: str,
    checkpoint_dir: Path,
    seed: int,
    num_workers: int = 0,
    on_epoch: EpochCallback | None = None,
    progress: Callable[[int, int], None] | None = None,
    amp: bool = False,
    compile: bool = False,
    ctx: DistContext = DistContext(),
    unused_parameters: bool = False,
) -> StageResult:
    """Train `model` for `cfg.epochs`, resuming from `checkpoint_dir/last.pt` when it exists.

    `loss_fn(model, batch)` returns (loss, parts); `validate()` returns metrics including `monitor` and
    must be called on every rank. Stops early after `cfg.patience` epochs without improvement; ends with
    the best epoch's weights. `on_epoch` runs on rank 0 only. `amp`: bf16 autocast where the device has
    native bf16; `compile`: torch.compile the step (checkpoints keep plain parameter names); `ctx`: this
    process's place in a DDP job, whose `cfg.batch_size` is the global batch; `unused_parameters`: some
    parameters get no gradient (the autoencoder stage never uses the answer head).
    """
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path = checkpoint_dir / "last.pt", checkpoint_dir / "best.pt"
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, cfg)
    sign = 1.0 if higher_is_better else -1.0
    state = {"epoch": 0, "best": -float("inf"), "best_epoch": -1, "bad_epochs": 0, "history": [], "stopped": False}

    if last_path.exists():
        saved = checkpoints.load(last_path)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        by_rank = saved.get("rng_by_rank") or []
        checkpoints.restore_rng(by_rank[ctx.rank] if len(by_rank) == ctx.world_size else saved["rng"])
        state = saved["state"]
        if ctx.is_main:
            checkpoints.reconcile_best(saved, last_path, best_path)
        ctx.barrier()  # every rank reads best.pt at the end
    else:
        checkpoints.seed_everything(seed + ctx.rank)  # rank 0 of a DDP job draws what a single process draws

    step_model = model
    if ctx.enabled:
        device_ids = [torch.device(device).index] if device.startswith("cuda") else None
        # With unused parameters, a static graph lets DDP learn them from the first backward instead of
        # traversing the outputs (the autoencoder returns logits its loss never reads).
        step_model = DistributedDataParallel(model, device_ids=device_ids, static_graph=unused_parameters)
    if compile:
        step_model = torch.compile(step_model)
    batch_size = per_rank_batch(cfg.batch_size, ctx)
    if batch_size % cfg.accumulate:
        raise UserError(f"train {name} batch_size {cfg.batch_size} over {ctx.world_size} processes leaves "
                        f"{batch_size} per process, which accumulate {cfg.accumulate} does not divide")
    pin = device.startswith("cuda")
    for epoch in range(state["epoch"], cfg.epochs):
        if state["stopped"]:
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(cfg, epoch)
        model.train()
        loader = make_loader(train_set, batch_size, shuffle=True, seed=seed, epoch=epoch, num_workers=num_workers,
                             pin_memory=pin, ctx=ctx)
        sums = train_epoch(step_model, loss_fn, loader, optimizer, params, cfg.grad_clip, device, amp, progress,
                           cfg.accumulate)
        loss_sum, correct, seen = ctx.all_reduce_sum(sums)
        ctx.broadcast_buffers(model)  # one set of BatchNorm statistics for validation and checkpoints
        metrics = {f"{name}_train_loss": loss_sum / max(seen, 1), f"{name}_lr": lr_at(cfg, epoch)}
        if math.isfinite(correct):
            metrics[f"{name}_train_acc"] = correct / max(seen, 1)
        metrics.update(validate())
        state["history"].append({"epoch": epoch, **metrics})
        score = sign * metrics[monitor]
        improved = math.isfinite(score) and score > state["best"]
        if improved:
            state.update(best=score, best_epoch=epoch, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
            if cfg.patience and state["bad_epochs"] >= cfg.patience:
                state["stopped"] = True
        state["epoch"] = epoch + 1
        rngs = ctx.all_gather_object(checkpoints.rng_state())  # collective: every rank takes part
        if ctx.is_main:
            # last.pt first: it records the best epoch, so a kill before best.pt is written leaves a pair
            # that checkpoints.reconcile_best completes on resume (last.pt then holds the best weights).
            checkpoints.save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                     "rng": rngs[0], "rng_by_rank": rngs, "state": state}, last_path)
            if improved:
                checkpoints.save_atomic({"model": model.state_dict(), "epoch": epoch, "metrics": metrics}, best_path)
            if on_epoch:
                on_epoch(epoch, metrics)
        ctx.barrier()  # nobody reads a checkpoint rank 0 is still writing

    del step_model  # a live DDP reducer would keep hooks on the parameters into the next stage
    if best_path.exists():
        model.load_state_dict(checkpoints.load(best_path)["model"])
    return StageResult(best_metric=sign * state["best"] if state["best_epoch"] >= 0 else float("nan"),
                       best_epoch=state["best_epoch"], epochs_run=state["epoch"], history=state["history"],
                       best_path=best_path if best_path.exists() else None, stopped_early=state["stopped"])


def qa_validator(model: torch.nn.Module, val_set: Dataset, batch_size: int, device: str, num_workers: int = 0,
                 amp: bool = False, ctx: DistContext = DistContext()) -> Callable[[], dict[str, float]]:
    """val_acc and val_acc_<type>; under DDP each rank scores its shard and the counts are summed."""

    def validate() -> dict[str, float]:
        indices = shard(len(val_set), ctx) if ctx.enabled else None
        result = evaluate(model, val_set, batch_size=batch_size, device=device, num_workers=num_workers,
                          indices=indices, amp=amp)
        return accuracy_metrics(ctx.all_reduce_sum(result.count_vector()), "val_acc")

    return validate
