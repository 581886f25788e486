"""The model registry: each model file registers its name, its builder and what it reads.

    @register_model("dualvgr", reads="features", model_class=DualVGR)
    def build_dualvgr(cfg: ModelConfig, sizes: ModelSizes) -> DualVGR: ...

Adding a model means adding one file in this package: the registry imports every module of `models/`
the first time it is asked, so registration needs no list of names anywhere else. Bundles, training,
evaluation, answer and search look a model up here.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn

from configs.errors import UserError
from configs.schema import ModelConfig
from models.decoders import Autoencoder, ClipDecoder

# What a model reads: cached features, the stored uint8 clips (backbones trained end to end), or questions only.
Reads = Literal["features", "clips", "questions"]


@dataclass(frozen=True)
class ModelSizes:
    """Everything a builder may need beyond the model config: vocabularies, feature sizes, backbones."""

    question_vocab_size: int
    answer_vocab_size: int
    num_clips: int
    frames_per_clip: int
    appearance_dim: int = 1
    motion_dim: int = 1
    word_dim: int = 300
    glove: torch.Tensor | None = None
    # For models that read clips: the backbones (named as in the feature config) and their normalisations.
    appearance_backbone: str | None = None
    motion_backbone: str | None = None
    appearance_normalization: str = "imagenet"
    motion_normalization: str = "hara"


Builder = Callable[[ModelConfig, ModelSizes], nn.Module]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Builder
    reads: Reads
    model_class: type[nn.Module]
    description: str
    # The reference's initialisation (Xavier) after building; a builder that composes registered models
    # initialises through them instead.
    init_like_reference: bool = True

    @property
    def uses_video(self) -> bool:
        return self.reads != "questions"

    @property
    def uses_clips(self) -> bool:
        return self.reads == "clips"


class UnknownModel(UserError, ValueError):
    """model.name names no registered model."""


_REGISTRY: dict[str, ModelEntry] = {}
_DISCOVERED = False


def register_model(name: str, *, reads: Reads, model_class: type[nn.Module], description: str,
                   init_like_reference: bool = True) -> Callable[[Builder], Builder]:
    """Decorator: register `builder` under `name`; a second registration of one name is a bug."""

    def decorate(builder: Builder) -> Builder:
        if name in _REGISTRY and _REGISTRY[name].builder.__qualname__ != builder.__qualname__:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, reads, model_class, description, init_like_reference)
        return builder

    return decorate


def _discover() -> None:
    """Import every module of this package once, so every model file has registered itself."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    import models

    for module in pkgutil.iter_modules(models.__path__):
        if not module.ispkg and module.name != "registry":
            importlib.import_module(f"models.{module.name}")
    _DISCOVERED = True


def model_names(reads: set[str] | None = None) -> tuple[str, ...]:
    """Registered model names (sorted), optionally only those that read one of `reads`."""
    _discover()
    return tuple(sorted(name for name, entry in _REGISTRY.items() if reads is None or entry.reads in reads))


def model_entry(name: str) -> ModelEntry:
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModel(f"model.name: unknown model {name!r}; known: {', '.join(model_names())}") from None


def entry_of(model: nn.Module) -> ModelEntry:
    """The registered entry a built model instance belongs to (its exact class)."""
    _discover()
    for entry in _REGISTRY.values():
        if type(model) is entry.model_class:
            return entry
    raise ValueError(f"{type(model).__name__} is not a registered model; known: {', '.join(model_names())}")


def init_like_reference_(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for linear, conv and LSTM layers, as the reference.

    Embeddings, normalisation layers and GraphAttention's own parameters keep their initialisation.
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.LSTM):
            for name, parameter in layer.named_parameters():
                if name.startswith("bias"):
                    nn.init.zeros_(parameter)
                else:
                    nn.init.xavier_uniform_(parameter)


def text_arguments(cfg: ModelConfig, sizes: ModelSizes) -> dict:
    """The question side's constructor arguments, shared by every model."""
    return dict(question_vocab_size=sizes.question_vocab_size, answer_vocab_size=sizes.answer_vocab_size,
                module_dim=cfg.module_dim, word_dim=sizes.word_dim, dropout=cfg.dropout, glove=sizes.glove,
                freeze_embeddings=cfg.freeze_embeddings)


def build_model(cfg: ModelConfig, **sizes) -> nn.Module:
    """The model named cfg.name, initialised as the reference (seed torch first for reproducibility).

    `sizes` are ModelSizes' fields. num_clips and frames_per_clip are validated only: every model here
    accepts any clip layout (DualVGR's graph is fully connected over whatever clips it gets).
    """
    resolved = ModelSizes(**sizes)
    if resolved.num_clips < 1 or resolved.frames_per_clip < 1:
        raise ValueError(f"num_clips and frames_per_clip must be >= 1, got {resolved.num_clips}, "
                         f"{resolved.frames_per_clip}")
    if cfg.module_dim % cfg.gat_heads:
        raise ValueError(f"module_dim {cfg.module_dim} is not divisible by gat_heads {cfg.gat_heads}")
    entry = model_entry(cfg.name)
    model = entry.builder(cfg, resolved)
    if entry.init_like_reference:
        init_like_reference_(model)
    return model


def build_autoencoder(model: nn.Module, cfg: ModelConfig, frames_per_clip: int) -> Autoencoder:
    """Wraps a video-using model with decoders g1 (appearance) and g2 (motion) of size cfg.decoder_size."""
    decoders = [ClipDecoder(cfg.module_dim, cfg.decoder_size, frames_per_clip) for _ in range(2)]
    for decoder in decoders:
        init_like_reference_(decoder)
    return Autoencoder(model, appearance_decoder=decoders[0], motion_decoder=decoders[1])


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
