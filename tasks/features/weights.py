"""Pretrained backbone weights: read a checkpoint file, check it key by key, load it.

Understood formats:

- ``torchvision_state_dict``: a flat ``{key: tensor}`` ImageNet ResNet state dict (``fc.*`` included).
- ``hara_checkpoint``: Hara et al.'s training checkpoint, ``{"arch", "epoch", "state_dict",
  "optimizer"}`` with ``module.``-prefixed keys and, being from 2017, no ``num_batches_tracked``.
- ``plain_state_dict``: any other flat ``{key: tensor}`` mapping, or ``{"state_dict": mapping}``.
- ``msvqa``: what ``save_backbone_weights`` writes, ``{"format": "msvqa", "backbone", "state_dict"}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from configs.errors import UserError
from tasks.digest import file_sha256, sha256_uncached

CheckpointFormat = Literal["torchvision_state_dict", "hara_checkpoint", "plain_state_dict", "msvqa"]

MSVQA_FORMAT = "msvqa"
_HARA_META_KEYS = frozenset({"arch", "epoch", "optimizer"})
_TORCHVISION_MARKERS = frozenset({"conv1.weight", "bn1.weight", "layer1.0.conv1.weight", "fc.weight"})
# Classifier heads of the full networks; the feature trunks here end before them.
_CLASSIFIER_PREFIXES = ("fc.",)
_DATA_PARALLEL_PREFIX = "module."
_SHOWN_KEYS = 10


class WeightsError(UserError, ValueError):
    """A weights file that cannot be used: unreadable, not a checkpoint, or not fitting the backbone."""


@dataclass(frozen=True)
class ShapeMismatch:
    key: str
    checkpoint_shape: tuple[int, ...]
    model_shape: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.key} (file {list(self.checkpoint_shape)} vs model {list(self.model_shape)})"


@dataclass
class WeightsReport:
    """How a checkpoint file fits a backbone, key by key."""

    path: Path
    sha256: str
    format: CheckpointFormat
    backbone: str
    matched: int = 0  # keys present in both with equal shapes
    missing: list[str] = field(default_factory=list)  # model keys the file lacks
    unexpected: list[str] = field(default_factory=list)  # file keys the model lacks
    mismatched: list[ShapeMismatch] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # classifier keys the truncated trunk drops
    # BatchNorm counters absent from pre-2018 checkpoints; the model keeps its own.
    defaulted: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def problems(self) -> str:
        """One sentence per kind of problem, each listing the first keys and a count."""
        parts = []
        for what, keys in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("mis-shaped", [str(m) for m in self.mismatched]),
        ):
            if keys:
                parts.append(f"{len(keys)} {what} key{'s' if len(keys) > 1 else ''}: {_shorten(keys)}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary, for ``msvqa weights check``."""
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "format": self.format,
            "backbone": self.backbone,
            "ok": self.ok,
            "matched": self.matched,
            "missing": self.missing,
            "unexpected": self.unexpected,
            "mismatched": [str(m) for m in self.mismatched],
            "ignored": self.ignored,
            "defaulted": self.defaulted,
        }


def _shorten(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    more = len(keys) - _SHOWN_KEYS
    return shown + (f" ... and {more} more" if more > 0 else "")


def _is_tensor_mapping(value: object) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()
    )


def detect_format(obj: object) -> tuple[CheckpointFormat, Mapping[str, torch.Tensor]] | None:
    """The format of a loaded object and the state dict inside it; None when it is not a checkpoint."""
    if not isinstance(obj, Mapping):
        return None
    inner = obj.get("state_dict")
    if _is_tensor_mapping(inner):
        if obj.get("format") == MSVQA_FORMAT:
            return "msvqa", inner
        if _HARA_META_KEYS & set(obj):
            return "hara_checkpoint", inner
        return "plain_state_dict", inner
    if _is_tensor_mapping(obj):
        return ("torchvision_state_dict" if _TORCHVISION_MARKERS <= set(obj) else "plain_state_dict"), obj
    return None


def read_state_dict(path: Path) -> tuple[CheckpointFormat, dict[str, torch.Tensor]]:
    """The file's format and its state dict with any ``module.`` prefix stripped (CPU tensors)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        # weights_only: a checkpoint is data; never run code from a pickle.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for non-checkpoint bytes
        raise WeightsError(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc
    detected = detect_format(obj)
    if detected is None:
        raise WeightsError(
            f"{path} is not a checkpoint: expected a {{name: tensor}} state dict or a dict with a 'state_dict' one, "
            f"got {type(obj).__name__}"
        )
    fmt, raw = detected
    return fmt, {_strip_prefix(k): v for k, v in raw.items()}


def _strip_prefix(key: str) -> str:
    # nn.DataParallel checkpoints (Hara's) prefix every key with "module.".
    return key[len(_DATA_PARALLEL_PREFIX) :] if key.startswith(_DATA_PARALLEL_PREFIX) else key


def compare_state_dicts(
    model_state: Mapping[str, torch.Tensor], file_state: Mapping[str, torch.Tensor], report: WeightsReport
) -> dict[str, torch.Tensor]:
    """Fill `report`'s key lists; return the file entries that fit the model (same key, same shape)."""
    fitting: dict[str, torch.Tensor] = {}
    for key, value in file_state.items():
        if key not in model_state:
            if key.startswith(_CLASSIFIER_PREFIXES):
                report.ignored.append(key)
            else:
                report.unexpected.append(key)
        elif tuple(value.shape) != tuple(model_state[key].shape):
            report.mismatched.append(ShapeMismatch(key, tuple(value.shape), tuple(model_state[key].shape)))
        else:
            fitting[key] = value
    for key in model_state:
        if key not in file_state:
            (report.defaulted if key.endswith(".num_batches_tracked") else report.missing).append(key)
    report.matched = len(fitting)
    return fitting


def load_backbone_weights(
    model: nn.Module, path: Path, *, strict: bool = True, backbone: str | None = None
) -> WeightsReport:
    """Copy the file's weights into `model` in place; `backbone` names the model in messages.

    strict: refuse (WeightsError, model untouched) on any missing, unexpected or mis-shaped key.
    Otherwise load the fitting keys and return the report listing the rest.
    """
    path = Path(path)
    fmt, file_state = read_state_dict(path)
    report = WeightsReport(path, file_sha256(path), fmt, backbone or type(model).__name__)
    fitting = compare_state_dicts(model.state_dict(), file_state, report)
    if strict and not report.ok:
        raise WeightsError(f"weights file {path} does not fit {report.backbone}: {report.problems()}")
    model.load_state_dict(fitting, strict=False)
    return report


def inspect_checkpoint(name: str, path: Path) -> WeightsReport:
    """How the file at `path` fits backbone `name`, without loading it into anything."""
    from models.backbones import build_backbone

    # Meta tensors carry shapes only: no memory, no random init for a 48M-parameter check.
    with torch.device("meta"):
        model = build_backbone(name)
    path = Path(path)
    fmt, file_state = read_state_dict(path)
    report = WeightsReport(path, file_sha256(path), fmt, name)
    compare_state_dicts(model.state_dict(), file_state, report)
    return report


def save_backbone_weights(model: nn.Module, path: Path, *, backbone: str) -> str:
    """Write `model`'s weights in the ``msvqa`` format; return the file's sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"format": MSVQA_FORMAT, "backbone": backbone, "state_dict": state}, path)
    return sha256_uncached(path)
