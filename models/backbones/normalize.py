"""Turn stored uint8 frames into the float input a backbone was trained on.

Every scheme computes, per channel c (RGB order):

    out[c] = (pixel[c] / divisor - mean[c]) / std[c]

on the raw 0-255 pixel value. The schemes:

- ``imagenet``: divisor 255, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225).
  torchvision's ImageNet convention, for the 2D ResNets.
- ``hara``: divisor 1, mean (114.7748, 107.7354, 99.4750), std (1, 1, 1).
  The convention of Hara et al.'s 2017 3D-ResNets code that trained
  ``resnext-101-kinetics.pth``: ``norm_value=1`` keeps pixels on the 0-255 scale,
  ``mean_dataset='activitynet'`` (the default there) subtracts the ActivityNet mean,
  and ``std_norm`` is off by default, so nothing is divided.
- ``hcrn``: divisor 1, mean 0, std 1, i.e. the raw 0-255 values as floats.
  HCRN's ``preprocess_features.py`` (whose features DualVGR reuses) feeds the
  motion ResNeXt ``torch.FloatTensor`` of the resized uint8 clip with no mean
  subtraction at all. Use it to reproduce published HCRN/DualVGR motion features.
- ``hcrn_appearance``: divisor 255, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.224).
  HCRN's appearance path (``run_batch``) uses ImageNet statistics with a typo in the
  blue std (0.224 instead of 0.225); reproduced for bit-compatible appearance features.
- ``unit``: divisor 255, mean 0.5, std 1: values in [-0.5, 0.5], for the tiny random nets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class NormalizationScheme:
    """Constants of one scheme: ``(pixel / divisor - mean) / std`` per RGB channel."""

    divisor: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


SCHEMES: dict[str, NormalizationScheme] = {
    "imagenet": NormalizationScheme(255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "hara": NormalizationScheme(1.0, (114.7748, 107.7354, 99.4750), (1.0, 1.0, 1.0)),
    "hcrn": NormalizationScheme(1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "hcrn_appearance": NormalizationScheme(255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.224)),
    "unit": NormalizationScheme(255.0, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0)),
}
SCHEME_NAMES: tuple[str, ...] = tuple(SCHEMES)


def get_scheme(name: str) -> NormalizationScheme:
    """The scheme called `name`; ValueError listing the known names otherwise."""
    try:
        return SCHEMES[name]
    except KeyError:
        raise ValueError(f"unknown normalization {name!r}; known: {', '.join(SCHEME_NAMES)}") from None


class NormalizeInput(nn.Module):
    """uint8 frames [..., H, W, 3] (channels-last, as stored) -> float [..., 3, H, W] normalised."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, scheme: str) -> None:
        super().__init__()
        constants = get_scheme(scheme)
        self.scheme = scheme
        self.divisor = constants.divisor
        # Shaped [3, 1, 1] so they broadcast over any leading dims of [..., 3, H, W].
        self.register_buffer("mean", torch.tensor(constants.mean, dtype=torch.float32).view(3, 1, 1))
        self.register_buffer("std", torch.tensor(constants.std, dtype=torch.float32).view(3, 1, 1))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.dtype != torch.uint8:
            # Floats here usually mean the frames were already normalised once.
            raise TypeError(f"NormalizeInput expects uint8 frames, got {frames.dtype}")
        if frames.dim() < 3 or frames.shape[-1] != 3:
            raise ValueError(f"expected frames [..., H, W, 3], got shape {tuple(frames.shape)}")
        x = frames.movedim(-1, -3).to(self.mean.dtype)  # [..., 3, H, W]
        x = (x / self.divisor - self.mean) / self.std
        # Batches of images stay channels-last in memory, as stored: the layout the conv kernels prefer.
        return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x.contiguous()

    def extra_repr(self) -> str:
        return f"scheme={self.scheme!r}"


class NormalizeClips(nn.Module):
    """uint8 clips [N, T, H, W, 3] -> float [N, 3, T, H, W] normalised, the 3D backbones' input."""

    def __init__(self, scheme: str) -> None:
        super().__init__()
        self.frames = NormalizeInput(scheme)

    @property
    def scheme(self) -> str:
        return self.frames.scheme

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        if clips.dim() != 5:
            raise ValueError(f"expected clips [N, T, H, W, 3], got shape {tuple(clips.shape)}")
        x = self.frames(clips)  # [N, T, 3, H, W]
        return x.transpose(1, 2).contiguous(memory_format=torch.channels_last_3d)  # [N, 3, T, H, W]
