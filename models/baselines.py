"""Baselines: a question-only model and a mean-pooled video model."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from configs.schema import ModelConfig
from models.fusion import OpenEndedHead, mlp_classifier
from models.onednn import Linear
from models.question_encoder import QuestionEncoder
from models.registry import ModelSizes, register_model, text_arguments
from models.types import Batch, ModelOutput


class QuestionOnly(nn.Module):
    """Answers from the question alone (BiLSTM sentence embedding + MLP); never reads the video."""

    uses_video: ClassVar[bool] = False

    def __init__(
        self,
        *,
        question_vocab_size: int,
        answer_vocab_size: int,
        module_dim: int = 768,
        word_dim: int = 300,
        dropout: float = 0.15,
        glove: torch.Tensor | None = None,
        freeze_embeddings: bool = False,
    ) -> None:
        super().__init__()
        self.question_encoder = QuestionEncoder(
            question_vocab_size,
            word_dim,
            module_dim,
            dropout=dropout,
            glove=glove,
            freeze_embeddings=freeze_embeddings,
            contextual_words=False,
        )
        self.classifier = mlp_classifier(module_dim, module_dim, answer_vocab_size, dropout=dropout)

    def forward(self, batch: Batch) -> ModelOutput:
        encoded = self.question_encoder(batch.question, batch.question_len)
        logits = self.classifier(encoded.sentence)  # [B, A]
        return ModelOutput(logits=logits)


class MeanPool(nn.Module):
    """Frame and clip features averaged over time, projected, concatenated with the question."""

    uses_video: ClassVar[bool] = True

    def __init__(
        self,
        *,
        question_vocab_size: int,
        answer_vocab_size: int,
        appearance_dim: int,
        motion_dim: int,
        module_dim: int = 768,
        word_dim: int = 300,
        dropout: float = 0.15,
        glove: torch.Tensor | None = None,
        freeze_embeddings: bool = False,
    ) -> None:
        super().__init__()
        self.question_encoder = QuestionEncoder(
            question_vocab_size,
            word_dim,
            module_dim,
            dropout=dropout,
            glove=glove,
            freeze_embeddings=freeze_embeddings,
            contextual_words=False,
        )
        self.appearance_projection = Linear(appearance_dim, module_dim)
        self.motion_projection = Linear(motion_dim, module_dim)
        self.answer_head = OpenEndedHead(module_dim, 2 * module_dim, answer_vocab_size, dropout=dropout)

    def forward(self, batch: Batch) -> ModelOutput:
        if batch.appearance is None or batch.motion is None:
            raise ValueError("MeanPool needs batch.appearance [B, C, F, Da] and batch.motion [B, C, Dm]")
        encoded = self.question_encoder(batch.question, batch.question_len)
        # Projecting per clip then averaging equals averaging then projecting (the layer is linear),
        # and it yields the per-clip features the decoders need.
        appearance_clips = self.appearance_projection(batch.appearance.mean(dim=2))  # [B, C, D]
        motion_clips = self.motion_projection(batch.motion)  # [B, C, D]
        video = torch.cat([appearance_clips.mean(dim=1), motion_clips.mean(dim=1)], dim=1)  # [B, 2D]
        logits = self.answer_head(encoded.sentence, F.elu(video))  # [B, A]
        clip_features = F.elu(appearance_clips + motion_clips)  # [B, C, D]
        return ModelOutput(logits=logits, clip_features=clip_features)


@register_model("question_only", reads="questions", model_class=QuestionOnly,
                description="the language-prior floor: answers from the question alone")
def build_question_only(cfg: ModelConfig, sizes: ModelSizes) -> QuestionOnly:
    return QuestionOnly(**text_arguments(cfg, sizes))


@register_model("mean_pool", reads="features", model_class=MeanPool,
                description="mean-pooled cached features fused with the question: the no-reasoning video floor")
def build_mean_pool(cfg: ModelConfig, sizes: ModelSizes) -> MeanPool:
    return MeanPool(**text_arguments(cfg, sizes), appearance_dim=sizes.appearance_dim, motion_dim=sizes.motion_dim)
