"""Which torch device a stage runs on."""

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
