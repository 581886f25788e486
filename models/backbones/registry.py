"""Backbones by name, as configs spell them."""

from __future__ import annotations

from typing import Callable

from torch import nn

from models.backbones.resnet2d import build_resnet2d
from models.backbones.resnext3d import resnet18_3d, resnext101_3d
from models.backbones.tiny import Tiny2d, Tiny3d

_BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "resnet101": lambda: build_resnet2d("resnet101"),
    "resnet50": lambda: build_resnet2d("resnet50"),
    "resnet18": lambda: build_resnet2d("resnet18"),
    "resnext101_3d": resnext101_3d,
    "resnet18_3d": resnet18_3d,
    "tiny2d": Tiny2d,
    "tiny3d": Tiny3d,
}
BACKBONE_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def build_backbone(name: str) -> nn.Module:
    """A randomly initialised backbone with ``out_dim``, ``kind``, ``input_size`` and ``normalization``.

    Pretrained weights are loaded separately (``tasks.weights.load_backbone_weights``).
    """
    try:
        builder = _BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONE_NAMES)}") from None
    return builder()
