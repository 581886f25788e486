"""Which precision a device trains and evaluates in: bf16 autocast where native and asked for, else float32."""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch


def bf16_supported(device: str) -> bool:
    """Native bfloat16 math: Ampere+ GPUs; CPUs with AVX512-BF16 or AMX (elsewhere it is emulated, slower)."""
    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def mixed_precision(device: str, enabled: bool) -> ContextManager:
    """bf16 autocast when enabled and the device has native bf16; otherwise float32.

    The flows enable it on CUDA by default and on CPU only when asked: a float32 CPU run is exact to the
    reference numbers. (CPU bf16 runs of the end-to-end model once differed between runs and turned NaN:
    a oneDNN Conv3d bug, worked around in models/msvqa.py.)
    """
    if enabled and bf16_supported(device):
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def precision_name(device: str, amp: bool) -> str:
    """What mixed_precision(device, amp) computes in: "bf16-autocast" or "float32"."""
    return "bf16-autocast" if amp and bf16_supported(device) else "float32"
