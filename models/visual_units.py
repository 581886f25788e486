"""Visual input units: per-clip appearance and motion features projected to module_dim."""

from __future__ import annotations

import torch
from torch import nn

from models.onednn import Linear, bilstm_final_states

# The reference drops slightly more of the encoded clip (0.18) than of the input frames (0.15).
CLIP_DROPOUT = 0.18


class AppearanceEncoder(nn.Module):
    """Encodes the frames of each clip with a BiLSTM; its final states are the clip's appearance."""

    def __init__(self, appearance_dim: int, module_dim: int, *, dropout: float) -> None:
        super().__init__()
        if module_dim % 2:
            raise ValueError(f"module_dim must be even for a BiLSTM, got {module_dim}")
        self.input_dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(appearance_dim, module_dim // 2, batch_first=True, bidirectional=True)
        self.output_dropout = nn.Dropout(CLIP_DROPOUT)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [B, C, F, Da] -> clips [B, C, D]."""
        batch, clips, num_frames, feature_dim = frames.shape
        squashed = torch.tanh(self.input_dropout(frames))  # [B, C, F, Da]
        sequences = squashed.reshape(batch * clips, num_frames, feature_dim)  # [B*C, F, Da]
        final_states = bilstm_final_states(self.lstm, sequences)  # [2, B*C, D/2]
        encoded = torch.cat([final_states[0], final_states[1]], dim=-1)  # [B*C, D]
        encoded = self.output_dropout(encoded)
        return encoded.view(batch, clips, -1)  # [B, C, D]


class MotionEncoder(nn.Module):
    """Projects one motion feature per clip to module_dim (a single linear layer, as the reference)."""

    def __init__(self, motion_dim: int, module_dim: int) -> None:
        super().__init__()
        self.projection = Linear(motion_dim, module_dim)

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        """motion [B, C, Dm] -> clips [B, C, D]."""
        return self.projection(motion)  # [B, C, D]
