"""Autoencoder stage: decoders that reconstruct clips from a model's per-clip visual features."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.onednn import Linear
from models.types import Batch, ModelOutput

# 4x4 seed images are upsampled by 2 per transposed convolution until they reach out_size.
_SEED_SIZE = 4
_MIN_CHANNELS = 16


class ClipDecoder(nn.Module):
    """Maps clip features [B, C, D] to reconstructed clips [B, C, F, 3, S, S].

    Each frame gets the clip feature plus a learned frame embedding, which is projected to a
    4x4 seed image and upsampled by transposed convolutions. The output has no activation: it
    predicts pixel values in normalised (mean/std) space, which tanh would clip.
    """

    def __init__(self, module_dim: int, out_size: int, frames: int, *, base_channels: int = 64) -> None:
        super().__init__()
        if out_size < 8 or out_size & (out_size - 1):
            raise ValueError(f"out_size must be a power of two >= 8, got {out_size}")
        self.frames = frames
        self.out_size = out_size
        self.base_channels = base_channels
        self.frame_embedding = nn.Parameter(torch.randn(frames, module_dim) * 0.02)
        self.seed = Linear(module_dim, base_channels * _SEED_SIZE * _SEED_SIZE)
        layers: list[nn.Module] = []
        channels = base_channels
        for _ in range(int(math.log2(out_size // _SEED_SIZE))):
            next_channels = max(channels // 2, _MIN_CHANNELS)
            layers += [nn.ConvTranspose2d(channels, next_channels, 4, stride=2, padding=1), nn.ReLU()]
            channels = next_channels
        layers.append(nn.Conv2d(channels, 3, 3, padding=1))
        self.upsample = nn.Sequential(*layers)

    def forward(self, clip_features: torch.Tensor) -> torch.Tensor:
        """clip_features [B, C, D] -> clips [B, C, F, 3, S, S]."""
        batch, clips, _ = clip_features.shape
        per_frame = clip_features.unsqueeze(2) + self.frame_embedding  # [B, C, F, D]
        seeds = F.relu(self.seed(per_frame))  # [B, C, F, Ch*4*4]
        images = seeds.reshape(-1, self.base_channels, _SEED_SIZE, _SEED_SIZE)  # [B*C*F, Ch, 4, 4]
        images = self.upsample(images)  # [B*C*F, 3, S, S]
        return images.view(batch, clips, self.frames, 3, self.out_size, self.out_size)  # [B, C, F, 3, S, S]


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between reconstructed and target clips."""
    return F.mse_loss(pred, target)


def resize_clips(clips: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 clips [B, C, F, H, W, 3] -> float32 [B, C, F, 3, S, S] in [0, 1], area-resized, contiguous.

    What the stored reconstruction targets hold (tasks/train/targets.py). Contiguous, so a target read
    from the store and one made here meet the loss in the same layout and reduce in the same order.
    """
    batch, num_clips, frames, height, width, _ = clips.shape
    images = clips.reshape(-1, height, width, 3).permute(0, 3, 1, 2).float() / 255.0  # [B*C*F, 3, H, W]
    images = F.interpolate(images, size=(size, size), mode="area")  # [B*C*F, 3, S, S]
    return images.reshape(batch, num_clips, frames, 3, size, size).contiguous()  # [B, C, F, 3, S, S]


def normalise_target(images: torch.Tensor, mean: tuple[float, float, float],
                     std: tuple[float, float, float]) -> torch.Tensor:
    """[..., 3, S, S] in [0, 1] -> the same shape in normalised (mean/std) space."""
    mean_t = images.new_tensor(mean).view(3, 1, 1)
    std_t = images.new_tensor(std).view(3, 1, 1)
    return (images - mean_t) / std_t


def make_reconstruction_target(
    clips: torch.Tensor, size: int, mean: tuple[float, float, float], std: tuple[float, float, float]
) -> torch.Tensor:
    """uint8 clips [B, C, F, H, W, 3] -> float targets [B, C, F, 3, S, S], resized and normalised."""
    return normalise_target(resize_clips(clips, size), mean, std)


@dataclass
class Reconstruction:
    output: ModelOutput  # the wrapped model's full output (logits, clip_features, aux)
    appearance: torch.Tensor  # [B, C, F, 3, S, S] from the appearance decoder (g1)
    motion: torch.Tensor  # [B, C, F, 3, S, S] from the motion decoder (g2)


class Autoencoder(nn.Module):
    """A VideoQA model plus decoders g1 (appearance) and g2 (motion) fed by its clip features.

    After this stage, `autoencoder.model.state_dict()` initialises the QA stage.
    """

    def __init__(self, model: nn.Module, appearance_decoder: ClipDecoder, motion_decoder: ClipDecoder) -> None:
        super().__init__()
        if not getattr(model, "uses_video", False):
            raise ValueError(f"{type(model).__name__} does not use video, so it has no clip features to decode")
        self.model = model
        self.appearance_decoder = appearance_decoder
        self.motion_decoder = motion_decoder

    def forward(self, batch: Batch) -> Reconstruction:
        output = self.model(batch)
        if output.clip_features is None:
            raise ValueError(f"{type(self.model).__name__} returned no clip_features")
        return Reconstruction(
            output=output,
            appearance=self.appearance_decoder(output.clip_features),  # [B, C, F, 3, S, S]
            motion=self.motion_decoder(output.clip_features),  # [B, C, F, 3, S, S]
        )
