"""The batch every model takes and the output every model returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Batch:
    """One batch of questions with their videos.

    Feature models read `appearance` / `motion`; end-to-end models read the uint8 clips; the autoencoder
    stage's loss reads `*_targets` when they are stored.
    """

    question: torch.Tensor  # [B, L] int64, padded with 0 (<NULL>)
    question_len: torch.Tensor  # [B] int64, >= 1
    appearance: torch.Tensor | None = None  # [B, C, F, Da] float frame features per clip
    motion: torch.Tensor | None = None  # [B, C, Dm] float clip features
    appearance_clips: torch.Tensor | None = None  # [B, C, F, Ha, Wa, 3] uint8
    motion_clips: torch.Tensor | None = None  # [B, C, F, Hm, Wm, 3] uint8
    answer: torch.Tensor | None = None  # [B] int64
    item_index: torch.Tensor | None = None  # [B] int64 position of each question in its split
    # The autoencoder stage's stored reconstruction targets, when the store holds them (else derived from
    # the clips): float32 in [0, 1], already at the decoder's size.
    appearance_targets: torch.Tensor | None = None  # [B, C, F, 3, S, S] float32
    motion_targets: torch.Tensor | None = None  # [B, C, F, 3, S, S] float32

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        """This batch on `device`, with features (stored and loaded as float16) made float32 there."""
        moved = {
            name: (value.to(device, non_blocking=non_blocking) if isinstance(value, torch.Tensor) else value)
            for name, value in self.__dict__.items()
        }
        for name in ("appearance", "motion"):
            if moved[name] is not None and moved[name].dtype == torch.float16:
                moved[name] = moved[name].float()
        return Batch(**moved)


@dataclass
class ModelOutput:
    """What a forward pass returns: logits plus the tensors the auxiliary losses need."""

    logits: torch.Tensor  # [B, A]
    # Fused clip-level visual features [B, C, D]: the decoders reconstruct clips from these.
    clip_features: torch.Tensor | None = None
    # Named auxiliary tensors (e.g. common/specific graph outputs for the consistency and HSIC losses).
    aux: dict[str, torch.Tensor] = field(default_factory=dict)
