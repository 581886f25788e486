"""Very small random-init conv nets for CPU demos.

They are never trained, so their features must keep *where* things are: instead of a global
average they pool to a 2x2 spatial grid and flatten it (out_dim = channels * 4). The 3D net's
temporal kernels make its features depend on the direction of motion, not only on position.
Weights come from torch's global generator: the same ``torch.manual_seed`` gives the same net.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

GRID = 2  # cells per side of the pooled spatial grid


def _init_random_features(module: nn.Module) -> None:
    # He init keeps activations from vanishing through ReLUs, which matters with no training.
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)


class Tiny2d(nn.Module):
    """Three 3x3 convolutions, 2x2-grid pooling: [N, 3, H, W] -> [N, channels * 4]."""

    kind: Literal["2d", "3d"] = "2d"
    input_size: int = 64
    normalization: str = "unit"

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, channels // 2, kernel_size=3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // 2, channels, kernel_size=3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(GRID)
        self.out_dim: int = channels * GRID * GRID
        _init_random_features(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # [N, channels, H/4, W/4]
        return torch.flatten(self.pool(x), 1)  # [N, channels * 4]


class Tiny3d(nn.Module):
    """Three 3x3x3 convolutions, 2x2-grid pooling over space (time averaged): [N, 3, T, H, W] -> [N, channels * 4]."""

    kind: Literal["2d", "3d"] = "3d"
    input_size: int = 64
    normalization: str = "unit"

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(3, channels // 2, kernel_size=3, stride=(1, 2, 2), padding=1),
            nn.ReLU(inplace=True),
            nn.Conv3d(channels // 2, channels, kernel_size=3, stride=(2, 2, 2), padding=1),
            nn.ReLU(inplace=True),
            nn.Conv3d(channels, channels, kernel_size=3, stride=1, padding=1),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool3d((1, GRID, GRID))
        self.out_dim: int = channels * GRID * GRID
        _init_random_features(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # [N, channels, T/2, H/4, W/4]
        return torch.flatten(self.pool(x), 1)  # [N, channels * 4]
