"""Checkpoints: where a configuration keeps them (its key), and atomic writes that a crash leaves either
the previous file or the new one, never half of one."""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from configs.errors import UserError
from configs.schema import ModelConfig, PipelineConfig
from storage.store import spec_hash
from tasks.atomic import save_atomic  # noqa: F401  (checkpoints.save_atomic is the loop's writer)

if TYPE_CHECKING:
    from tasks.train.data import QAData


def load(path: Path) -> dict[str, Any]:
    """Tensors and plain values only: a checkpoint swapped into a shared folder cannot run code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UserError(f"Checkpoint {path} holds more than tensors and plain values (written by an older "
                        "version or by someone else); delete it to train that stage afresh.") from error


def rng_state() -> dict[str, Any]:
    """Every generator a training step draws from, as tensors and plain values (weights_only loads them)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),  # (version, tuple of ints, float or None)
    }
    # Only once this process has used CUDA: asking earlier would start CUDA in a CPU-only run.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()  # one per device, so a GPU resume draws the same
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        for index, device_state in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state, index)


def reconcile_best(last: dict[str, Any], last_path: Path, best_path: Path) -> None:
    """Make best.pt the epoch that last.pt records as best.

    The loop writes last.pt before best.pt, so a kill between them leaves a last.pt whose best epoch is
    its own epoch while best.pt still holds an older one (or is missing); last.pt's weights are then the
    best ones. Any other disagreement is a folder mixed from two runs.
    """
    state = last["state"]
    best_epoch = state["best_epoch"]
    if best_epoch < 0:
        return
    held = load(best_path)["epoch"] if best_path.exists() else None
    if held == best_epoch:
        return
    if best_epoch != state["epoch"] - 1:
        raise UserError(f"Checkpoint {best_path} holds epoch {held} but {last_path} records epoch {best_epoch} "
                        "as best; delete that checkpoint folder to train the stage afresh.")
    metrics = {key: value for key, value in state["history"][-1].items() if key != "epoch"}
    save_atomic({"model": last["model"], "epoch": best_epoch, "metrics": metrics}, best_path)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def training_dir(config: PipelineConfig, data: QAData, model_cfg: ModelConfig) -> Path:
    """Checkpoints are keyed by everything that shapes training, so a rerun of the same config resumes."""
    # Settings that change speed or logging but not the numbers stay out of the key.
    ignored = {"device", "num_workers", "checkpoint_dir", "baseline", "compare_with", "compile", "features_in_memory",
               "clips_in_memory"}
    # Memory settings too (gradient accumulation, activation checkpointing): a run that did not fit can
    # resume with them on, and older keys stay as they were.
    exclude = {**dict.fromkeys(ignored, True), "autoencoder": {"accumulate"}, "qa": {"accumulate"}}
    train = config.train.model_dump(mode="json", exclude=exclude)
    model = model_cfg.model_dump(mode="json", exclude={"checkpoint_activations"})
    # The store snapshot is part of the key: data reprocessed in place is a new snapshot, so it really retrains.
    key = spec_hash({"model": model, "train": train, "data": data.spec_hashes,
                     "snapshot": data.snapshot})
    return Path(config.train.checkpoint_dir) / f"{model_cfg.name}-{key}"
