"""Builds VideoQA models and the autoencoder by name from a ModelConfig."""

from __future__ import annotations

import torch
from torch import nn

from configs.schema import ModelConfig
from models.backbones import build_backbone
from models.msvqa import MSVQA
from models.baselines import MeanPool, QuestionOnly
from models.decoders import Autoencoder, ClipDecoder
from models.dualvgr import DualVGR

MODEL_NAMES: tuple[str, ...] = ("dualvgr", "question_only", "mean_pool")

# Every model takes a models.types.Batch and returns a models.types.ModelOutput, and has `uses_video`.
VideoQAModel = DualVGR | QuestionOnly | MeanPool


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


def build_model(
    cfg: ModelConfig,
    *,
    question_vocab_size: int,
    answer_vocab_size: int,
    appearance_dim: int,
    motion_dim: int,
    num_clips: int,
    frames_per_clip: int,
    word_dim: int = 300,
    glove: torch.Tensor | None = None,
) -> VideoQAModel:
    """The model named cfg.name, initialised as the reference (seed torch first for reproducibility).

    num_clips and frames_per_clip are validated only: every model here accepts any clip layout
    (DualVGR's graph is fully connected over whatever clips it gets).
    """
    if num_clips < 1 or frames_per_clip < 1:
        raise ValueError(f"num_clips and frames_per_clip must be >= 1, got {num_clips}, {frames_per_clip}")
    if cfg.module_dim % cfg.gat_heads:
        raise ValueError(f"module_dim {cfg.module_dim} is not divisible by gat_heads {cfg.gat_heads}")
    text = dict(
        question_vocab_size=question_vocab_size,
        answer_vocab_size=answer_vocab_size,
        module_dim=cfg.module_dim,
        word_dim=word_dim,
        dropout=cfg.dropout,
        glove=glove,
        freeze_embeddings=cfg.freeze_embeddings,
    )
    model: VideoQAModel
    if cfg.name == "dualvgr":
        model = DualVGR(
            **text,
            appearance_dim=appearance_dim,
            motion_dim=motion_dim,
            unit_layers=cfg.unit_layers,
            graph_layers=cfg.graph_layers,
            gat_heads=cfg.gat_heads,
            gat_dropout=cfg.gat_dropout,
            leaky_slope=cfg.leaky_slope,
            mfb_factor=cfg.mfb_factor,
            clip_positions=num_clips if cfg.clip_positions else 0,
        )
    elif cfg.name == "question_only":
        model = QuestionOnly(**text)
    elif cfg.name == "mean_pool":
        model = MeanPool(**text, appearance_dim=appearance_dim, motion_dim=motion_dim)
    else:
        raise ValueError(f"unknown model {cfg.name!r}; known: {', '.join(MODEL_NAMES)}")
    init_like_reference_(model)
    return model


def build_autoencoder(model: VideoQAModel, cfg: ModelConfig, frames_per_clip: int) -> Autoencoder:
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


def build_msvqa(cfg: ModelConfig, *, appearance_backbone: str, motion_backbone: str,
                appearance_normalization: str, motion_normalization: str, **sizes) -> MSVQA:
    """MSVQA: DualVGR on trainable backbones (named as in the feature config), clips in, answers out.

    `sizes` are build_model's keyword arguments except the feature dimensions, which the backbones set.
    Backbone weights are loaded by the caller (tasks.weights), keeping this function free of I/O.
    """
    app, mot = build_backbone(appearance_backbone), build_backbone(motion_backbone)
    qa = build_model(cfg.model_copy(update={"name": "dualvgr"}), appearance_dim=app.out_dim,
                     motion_dim=mot.out_dim, **sizes)
    return MSVQA(qa, app, mot, appearance_normalization, motion_normalization)
