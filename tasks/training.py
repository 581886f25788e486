"""Training loops for the two stages, resumable from their last checkpoint, deterministic on CPU."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from configs.schema import StageConfig
from models.losses import qa_loss
from models.types import Batch
from storage.qa_dataset import collate
from tasks import checkpoints
from tasks.evaluation import evaluate

EpochCallback = Callable[[int, dict[str, float]], None]
LossFn = Callable[[torch.nn.Module, Batch], tuple[torch.Tensor, dict[str, float]]]


@dataclass
class StageResult:
    best_metric: float
    best_epoch: int
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    best_path: Path | None = None


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0,
                num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """Shuffling comes from a generator seeded by (seed, epoch), so a resumed epoch sees the same order."""
    sampler = None
    if shuffle:
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        sampler = RandomSampler(dataset, generator=generator)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, collate_fn=collate,
                      num_workers=num_workers, pin_memory=pin_memory, persistent_workers=False)


def qa_loss_fn(alpha: float = 0.0, beta: float = 0.0) -> LossFn:
    """Answer cross-entropy plus the weighted auxiliary losses the model provides."""

    def loss_fn(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        output = model(batch)
        total, parts = qa_loss(output, batch.answer, alpha=alpha, beta=beta)
        values = {name: float(value) for name, value in parts.items()}
        values["correct"] = float((output.logits.argmax(-1) == batch.answer).sum())  # logits [B, A]
        return total, values

    return loss_fn


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
) -> StageResult:
    """Train `model` for `cfg.epochs`, resuming from `checkpoint_dir/last.pt` when it exists.

    `loss_fn(model, batch)` returns (loss, parts); `validate()` returns metrics including `monitor`.
    """
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path = checkpoint_dir / "last.pt", checkpoint_dir / "best.pt"
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = cfg.lr_decay_epochs or max(cfg.epochs, 1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step, gamma=cfg.lr_decay)
    sign = 1.0 if higher_is_better else -1.0
    state = {"epoch": 0, "best": -float("inf"), "best_epoch": -1, "bad_epochs": 0, "history": [], "stopped": False}

    if last_path.exists():
        saved = checkpoints.load(last_path)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        checkpoints.restore_rng(saved["rng"])
        state = saved["state"]
    else:
        checkpoints.seed_everything(seed)

    pin = device.startswith("cuda")
    for epoch in range(state["epoch"], cfg.epochs):
        if state["stopped"]:
            break
        model.train()
        loader = make_loader(train_set, cfg.batch_size, shuffle=True, seed=seed, epoch=epoch,
                             num_workers=num_workers, pin_memory=pin)
        total_loss, total_correct, seen = 0.0, 0.0, 0
        for index, batch in enumerate(loader):
            batch = batch.to(device, non_blocking=pin)
            loss, parts = loss_fn(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            size = int(batch.question.shape[0])
            total_loss += float(loss.detach()) * size
            total_correct += parts.get("correct", 0.0)
            seen += size
            if progress:
                progress(index + 1, len(loader))
        scheduler.step()
        metrics = {f"{name}_train_loss": total_loss / max(seen, 1)}
        if "correct" in parts:
            metrics[f"{name}_train_acc"] = total_correct / max(seen, 1)
        metrics.update(validate())
        state["history"].append({"epoch": epoch, **metrics})
        score = sign * metrics[monitor]
        if score > state["best"]:
            state.update(best=score, best_epoch=epoch, bad_epochs=0)
            checkpoints.save_atomic({"model": model.state_dict(), "epoch": epoch, "metrics": metrics}, best_path)
        else:
            state["bad_epochs"] += 1
            if cfg.patience and state["bad_epochs"] >= cfg.patience:
                state["stopped"] = True
        state["epoch"] = epoch + 1
        checkpoints.save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                 "scheduler": scheduler.state_dict(), "rng": checkpoints.rng_state(),
                                 "state": state}, last_path)
        if on_epoch:
            on_epoch(epoch, metrics)

    if best_path.exists():
        model.load_state_dict(checkpoints.load(best_path)["model"])
    return StageResult(best_metric=sign * state["best"] if state["best_epoch"] >= 0 else float("nan"),
                       best_epoch=state["best_epoch"], epochs_run=state["epoch"], history=state["history"],
                       best_path=best_path if best_path.exists() else None)


def qa_validator(model: torch.nn.Module, val_set: Dataset, batch_size: int, device: str,
                 num_workers: int = 0) -> Callable[[], dict[str, float]]:
    def validate() -> dict[str, float]:
        result = evaluate(model, val_set, batch_size=batch_size, device=device, num_workers=num_workers)
        return {"val_acc": result.accuracy}

    return validate
