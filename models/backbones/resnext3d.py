"""3D ResNeXt-101 and ResNet-18 of Hara et al. (2017 3D-ResNets code) as clip feature extractors.

Module names follow that code, so ``resnext-101-kinetics.pth`` (and ``resnet-18-kinetics.pth``)
load key for key once their ``module.`` prefix is stripped; their ``fc.*`` keys have no home here.
Architecture facts taken from it: a 7x7x7 stem with stride (1, 2, 2), a 3x3x3 max pool of
stride 2 (time included), stage widths 128/256/512/1024 with bottleneck expansion 2 for the
ResNeXt (cardinality 32, inner width ``cardinality * (planes // 32)``) and 64/128/256/512 with
basic blocks for the ResNet. The original's fixed-size final average pool is adaptive here, so
clips other than 16 x 112 x 112 work too.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

ShortcutType = Literal["A", "B"]


class ZeroPadShortcut(nn.Module):
    """Shortcut type A: subsample by striding and pad the new channels with zeros (no weights)."""

    def __init__(self, out_channels: int, stride: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool3d(x, kernel_size=1, stride=self.stride)  # [N, C, T', H', W']
        pad = x.new_zeros(x.shape[0], self.out_channels - x.shape[1], *x.shape[2:])
        return torch.cat([x, pad], dim=1)  # [N, out_channels, T', H', W']


def _shortcut(in_channels: int, out_channels: int, stride: int, kind: ShortcutType) -> nn.Module | None:
    if stride == 1 and in_channels == out_channels:
        return None
    if kind == "A":
        return ZeroPadShortcut(out_channels, stride)
    # Type B: a strided 1x1x1 projection; checkpoint keys downsample.0.weight / downsample.1.*.
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm3d(out_channels),
    )


class ResNeXtBottleneck3d(nn.Module):
    """1x1x1 -> grouped 3x3x3 -> 1x1x1 residual block, output width ``planes * 2``."""

    expansion = 2

    def __init__(self, in_channels: int, planes: int, cardinality: int, stride: int, shortcut: ShortcutType) -> None:
        super().__init__()
        inner = cardinality * (planes // 32)
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv3d(in_channels, inner, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(inner)
        self.conv2 = nn.Conv3d(inner, inner, kernel_size=3, stride=stride, padding=1, groups=cardinality, bias=False)
        self.bn2 = nn.BatchNorm3d(inner)
        self.conv3 = nn.Conv3d(inner, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out_channels, stride, shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))  # strided here: [N, inner, T/s, H/s, W/s]
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


class BasicBlock3d(nn.Module):
    """Two 3x3x3 convolutions with a residual connection, output width ``planes``."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, cardinality: int, stride: int, shortcut: ShortcutType) -> None:
        super().__init__()
        del cardinality  # basic blocks are not grouped; the argument keeps one block signature
        self.conv1 = nn.Conv3d(in_channels, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, planes, stride, shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Hara3dTrunk(nn.Module):
    """Hara et al.'s 3D residual net without its classifier: [N, 3, T, H, W] -> [N, out_dim]."""

    kind: Literal["2d", "3d"] = "3d"
    input_size: int = 112
    clip_length: int = 16  # the sample_duration the published checkpoints were trained on
    normalization: str = "hara"

    def __init__(
        self,
        block: type[ResNeXtBottleneck3d] | type[BasicBlock3d],
        blocks_per_stage: tuple[int, int, int, int],
        widths: tuple[int, int, int, int],
        *,
        cardinality: int = 1,
        shortcut: ShortcutType = "B",
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 64, kernel_size=7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        channels = 64
        stages = []
        for index, (count, planes) in enumerate(zip(blocks_per_stage, widths)):
            first_stride = 1 if index == 0 else 2
            layer = []
            for block_index in range(count):
                stride = first_stride if block_index == 0 else 1
                layer.append(block(channels, planes, cardinality, stride, shortcut))
                channels = planes * block.expansion
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.out_dim: int = channels
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # [N, 64, T, H/2, W/2]
        x = self.maxpool(x)  # [N, 64, T/2, H/4, W/4]
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # [N, out_dim, T/16, H/32, W/32]
        return torch.flatten(self.avgpool(x), 1)  # [N, out_dim]


def resnext101_3d(shortcut: ShortcutType = "B", cardinality: int = 32) -> Hara3dTrunk:
    """3D ResNeXt-101 (blocks 3/4/23/3), 2048-d: the architecture of ``resnext-101-kinetics.pth``."""
    return Hara3dTrunk(
        ResNeXtBottleneck3d, (3, 4, 23, 3), (128, 256, 512, 1024), cardinality=cardinality, shortcut=shortcut
    )


def resnet18_3d(shortcut: ShortcutType = "A") -> Hara3dTrunk:
    """3D ResNet-18 (basic blocks 2/2/2/2), 512-d; shortcut A as in ``resnet-18-kinetics.pth``."""
    return Hara3dTrunk(BasicBlock3d, (2, 2, 2, 2), (64, 128, 256, 512), shortcut=shortcut)
