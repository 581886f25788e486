"""Fusion and pooling blocks: MFB, attention over sources, attention over clips, the answer head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.onednn import Linear

# The reference's MFB joint dimension (its default), independent of module_dim.
MFB_JOINT_DIM = 256


class MFB(nn.Module):
    """Multi-modal factorised bilinear pooling of two inputs with the same leading shape.

    Both inputs are projected to joint_dim * factor (ELU), multiplied elementwise, sum-pooled over
    each group of `factor`, and projected to output_dim (ELU), as the reference's MFB block.
    """

    def __init__(
        self, input_dims: tuple[int, int], output_dim: int, *, joint_dim: int = MFB_JOINT_DIM, factor: int = 2
    ) -> None:
        super().__init__()
        self.joint_dim = joint_dim
        self.factor = factor
        self.project_first = Linear(input_dims[0], joint_dim * factor)
        self.project_second = Linear(input_dims[1], joint_dim * factor)
        self.output = Linear(joint_dim, output_dim)

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """first [..., D1], second [..., D2] -> [..., O]."""
        projected_first = F.elu(self.project_first(first))  # [..., M*K]
        projected_second = F.elu(self.project_second(second))  # [..., M*K]
        joint = projected_first * projected_second  # [..., M*K]
        pooled = joint.unflatten(-1, (self.joint_dim, self.factor)).sum(-1)  # [..., M]
        return F.elu(self.output(pooled))  # [..., O]


class SourceAttentionFusion(nn.Module):
    """Per-node attention over several sources of the same nodes (here: common vs specific graph)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        # No final bias: it would be shared by all sources and cancel in the softmax.
        self.score = nn.Sequential(Linear(dim, hidden_dim), nn.Tanh(), Linear(hidden_dim, 1, bias=False))

    def forward(self, sources: list[torch.Tensor]) -> torch.Tensor:
        """sources: S tensors [B, N, D] -> fused [B, N, D]."""
        stacked = torch.stack(sources, dim=1)  # [B, S, N, D]
        weights = torch.softmax(self.score(stacked), dim=1)  # [B, S, N, 1]
        return (weights * stacked).sum(dim=1)  # [B, N, D]


class ClipAttentionPool(nn.Module):
    """Self-attention pooling of clip features into one video vector."""

    def __init__(self, dim: int, *, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.project = Linear(dim, dim, bias=False)
        # No bias: shared by all clips, it cancels in the softmax.
        self.score = Linear(dim, 1, bias=False)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """clips [B, C, D] -> video [B, D]."""
        clips = self.dropout(clips)
        scores = self.score(F.elu(self.project(clips)))  # [B, C, 1]
        weights = torch.softmax(scores, dim=1)  # [B, C, 1]
        return (weights * clips).sum(dim=1)  # [B, D]


def mlp_classifier(in_dim: int, hidden_dim: int, num_classes: int, *, dropout: float) -> nn.Sequential:
    """The reference's classifier: dropout, linear, ELU, batch norm, dropout, linear to logits."""
    return nn.Sequential(
        nn.Dropout(dropout),
        Linear(in_dim, hidden_dim),
        nn.ELU(),
        nn.BatchNorm1d(hidden_dim),
        nn.Dropout(dropout),
        Linear(hidden_dim, num_classes),
    )


class OpenEndedHead(nn.Module):
    """Open-ended answer head: projected question concatenated with the video vector, classified."""

    def __init__(self, module_dim: int, visual_dim: int, num_answers: int, *, dropout: float) -> None:
        super().__init__()
        self.question_projection = Linear(module_dim, module_dim)
        self.classifier = mlp_classifier(visual_dim + module_dim, module_dim, num_answers, dropout=dropout)

    def forward(self, question: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """question [B, D], visual [B, Dv] -> logits [B, A]."""
        projected = self.question_projection(question)  # [B, D]
        joint = torch.cat([visual, projected], dim=1)  # [B, Dv + D]
        return self.classifier(joint)  # [B, A]
