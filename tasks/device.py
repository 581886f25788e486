"""Which torch device a stage runs on, and how its kernels are chosen there."""

from __future__ import annotations

import torch

from configs.errors import UserError


def resolve_device(name: str) -> str:
    """`auto` -> cuda when available, else cpu; an explicit device must exist."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} was asked for but no CUDA device is available")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise UserError(f"device {name!r} is not 'auto', 'cpu' or 'cuda[:N]'")
    return name


def tune_kernels_for(device: str) -> None:
    """On CUDA, let cuDNN time its convolution algorithms once per input shape and keep the fastest.

    The stages feed the backbones fixed shapes (clips of one spec, batches of one size), so the search
    pays for itself within a few batches. Convolutions on CUDA then need not repeat bit for bit (runs on
    CPU are unaffected and still do).
    """
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
