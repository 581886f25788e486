"""Parameter counts of every registered model at a config's sizes (for `msvqa models`)."""

from __future__ import annotations

import torch

from configs.schema import PipelineConfig
from models.backbones import build_backbone
from models.registry import MODEL_NAMES, build_model, count_parameters

# The real MSVD-QA sizes: HCRN-style question vocabulary order of magnitude and 1,854 answer classes.
DEFAULT_QUESTION_VOCAB = 4000
DEFAULT_ANSWER_VOCAB = 1854


def model_parameter_table(config: PipelineConfig) -> list[dict]:
    app_dim = build_backbone(config.features.appearance.backbone).out_dim
    mot_dim = build_backbone(config.features.motion.backbone).out_dim
    rows = []
    for name in MODEL_NAMES:
        torch.manual_seed(0)
        model = build_model(
            config.model.model_copy(update={"name": name}),
            question_vocab_size=config.model.question_vocab_size or DEFAULT_QUESTION_VOCAB,
            answer_vocab_size=config.model.answer_vocab_size or DEFAULT_ANSWER_VOCAB,
            appearance_dim=app_dim, motion_dim=mot_dim, num_clips=config.clips.num_clips,
            frames_per_clip=config.clips.frames_per_clip, word_dim=config.text.word_dim,
        )
        total, trainable = count_parameters(model)
        rows.append({"name": name, "parameters": total, "trainable_parameters": trainable})
    return rows
