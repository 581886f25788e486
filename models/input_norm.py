"""Per-dimension standardisation of the feature inputs, carried inside the model.

Backbone features can sit on a large constant offset with tiny variation (untrained backbones do);
standardising with statistics of the training videos makes them usable, and keeping the statistics as
buffers means a saved or logged model normalises its inputs exactly as it did in training.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from models.types import Batch, ModelOutput


class StandardizedInputs(nn.Module):
    """Wraps a feature model: (x - mean) / std on appearance and motion, then the model."""

    def __init__(self, model: nn.Module, appearance_dim: int, motion_dim: int):
        super().__init__()
        self.model = model
        self.uses_video = getattr(model, "uses_video", True)
        self.register_buffer("appearance_mean", torch.zeros(appearance_dim))
        self.register_buffer("appearance_std", torch.ones(appearance_dim))
        self.register_buffer("motion_mean", torch.zeros(motion_dim))
        self.register_buffer("motion_std", torch.ones(motion_dim))

    @torch.no_grad()
    def set_statistics(self, appearance: torch.Tensor, motion: torch.Tensor, eps: float = 1e-6) -> None:
        """appearance [..., Da] and motion [..., Dm] samples of the training videos."""
        app = appearance.reshape(-1, appearance.shape[-1]).float()  # [n, Da]
        mot = motion.reshape(-1, motion.shape[-1]).float()  # [m, Dm]
        self.appearance_mean.copy_(app.mean(0))
        self.appearance_std.copy_(app.std(0).clamp_min(eps))
        self.motion_mean.copy_(mot.mean(0))
        self.motion_std.copy_(mot.std(0).clamp_min(eps))

    def forward(self, batch: Batch) -> ModelOutput:
        if batch.appearance is None or batch.motion is None:
            return self.model(batch)
        appearance = (batch.appearance - self.appearance_mean) / self.appearance_std  # [B, C, F, Da]
        motion = (batch.motion - self.motion_mean) / self.motion_std  # [B, C, Dm]
        return self.model(dataclasses.replace(batch, appearance=appearance, motion=motion))
