"""Parameter counts of every registered model at a config's sizes (for `msvqa models`)."""

from __future__ import annotations

import torch

from configs.schema import PipelineConfig
from models.backbones import build_backbone
from models.registry import ModelSizes, build_model, count_parameters, model_entry, model_names

# The real MSVD-QA sizes: HCRN-style question vocabulary order of magnitude and 1,854 answer classes.
DEFAULT_QUESTION_VOCAB = 4000
DEFAULT_ANSWER_VOCAB = 1854


def model_parameter_table(config: PipelineConfig) -> list[dict]:
    """One row per registered model; a model that reads clips counts its backbones (it trains them)."""
    features = config.features
    sizes = ModelSizes(
        question_vocab_size=config.model.question_vocab_size or DEFAULT_QUESTION_VOCAB,
        answer_vocab_size=config.model.answer_vocab_size or DEFAULT_ANSWER_VOCAB,
        appearance_dim=build_backbone(features.appearance.backbone).out_dim,
        motion_dim=build_backbone(features.motion.backbone).out_dim,
        num_clips=config.clips.num_clips, frames_per_clip=config.clips.frames_per_clip, word_dim=config.text.word_dim,
        appearance_backbone=features.appearance.backbone, motion_backbone=features.motion.backbone,
        appearance_normalization=features.appearance.normalization,
        motion_normalization=features.motion.normalization)
    rows = []
    for name in model_names():
        entry = model_entry(name)
        torch.manual_seed(0)
        model = build_model(config.model.model_copy(update={"name": name}), **sizes.__dict__)
        total, trainable = count_parameters(model)
        rows.append({"name": name, "reads": entry.reads, "parameters": total, "trainable_parameters": trainable,
                     "description": entry.description})
    return rows
