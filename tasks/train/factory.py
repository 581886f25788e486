"""The model factory: a registered model at the data's sizes, its backbone weights and input statistics loaded."""

from __future__ import annotations

import numpy as np
import torch

from configs.schema import ModelConfig, PipelineConfig
from models.input_norm import StandardizedInputs
from models.registry import ModelSizes, build_model, model_entry
from tasks.features.weights import load_backbone_weights
from tasks.train.data import QAData
from tasks.train.statistics import feature_statistics


def feature_dims(data: QAData) -> tuple[int, int]:
    if data.features is None:
        return 1, 1
    return data.features.shape("appearance")[-1], data.features.shape("motion")[-1]


def model_sizes(config: PipelineConfig, data: QAData) -> ModelSizes:
    """The registry's sizes for this config's models over `data` (vocabularies, features, backbones)."""
    app_dim, mot_dim = feature_dims(data)
    feats = config.features
    return ModelSizes(
        question_vocab_size=len(data.vocab.question_token_to_idx),
        answer_vocab_size=len(data.vocab.answer_token_to_idx),
        appearance_dim=app_dim,
        motion_dim=mot_dim,
        num_clips=config.clips.num_clips,
        frames_per_clip=config.clips.frames_per_clip,
        word_dim=config.text.word_dim,
        glove=data.glove,
        appearance_backbone=feats.appearance.backbone,
        motion_backbone=feats.motion.backbone,
        appearance_normalization=feats.appearance.normalization,
        motion_normalization=feats.motion.normalization,
    )


def make_model(model_cfg: ModelConfig, config: PipelineConfig, data: QAData, seed: int) -> torch.nn.Module:
    """Build the configured model; feature models get input standardisation from the training videos,
    end-to-end models their backbones' configured weights."""
    torch.manual_seed(seed)
    entry = model_entry(model_cfg.name)
    model = build_model(model_cfg, **model_sizes(config, data).__dict__)
    if entry.uses_clips:
        _load_backbone_weights(model, config)
        return model
    if not (model_cfg.standardize_features and entry.uses_video and data.features is not None):
        return model
    app_dim, mot_dim = feature_dims(data)
    wrapped = StandardizedInputs(model, app_dim, mot_dim)
    train = data.splits["train"]
    rows = np.unique(train.arrays.video_rows)
    with torch.no_grad():
        for name in ("appearance", "motion"):
            mean, std = feature_statistics(train.features, name, rows)
            getattr(wrapped, f"{name}_mean").copy_(mean)
            getattr(wrapped, f"{name}_std").copy_(std.clamp_min(1e-6))
    return wrapped


def _load_backbone_weights(model: torch.nn.Module, config: PipelineConfig) -> None:
    feats = config.features
    for backbone, settings in ((model.appearance_backbone, feats.appearance), (model.motion_backbone, feats.motion)):
        if settings.weights is not None:
            load_backbone_weights(backbone, settings.weights)
