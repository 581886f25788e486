"""torchvision's 2D ResNets cut after global average pooling (pool5), as frame feature extractors.

Module names are torchvision's, so an ImageNet state dict such as ``resnet101-*.pth``
loads key for key; only its ``fc.*`` classifier keys have no home here.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import nn
from torchvision import models as tv_models

_TORCHVISION_BUILDERS: dict[str, Callable[..., tv_models.ResNet]] = {
    "resnet18": tv_models.resnet18,
    "resnet50": tv_models.resnet50,
    "resnet101": tv_models.resnet101,
}


class ResNet2dTrunk(nn.Module):
    """A torchvision ResNet without its classifier: [N, 3, H, W] -> [N, out_dim]."""

    kind: Literal["2d", "3d"] = "2d"
    input_size: int = 224
    normalization: str = "imagenet"

    def __init__(self, resnet: tv_models.ResNet) -> None:
        super().__init__()
        # Same attribute names as torchvision's ResNet: they are the state-dict keys.
        self.conv1 = resnet.conv1
        self.bn1 = resnet.bn1
        self.relu = resnet.relu
        self.maxpool = resnet.maxpool
        self.layer1 = resnet.layer1
        self.layer2 = resnet.layer2
        self.layer3 = resnet.layer3
        self.layer4 = resnet.layer4
        self.avgpool = resnet.avgpool
        self.out_dim: int = resnet.fc.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # [N, 64, H/4, W/4]
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # [N, out_dim, H/32, W/32]
        return torch.flatten(self.avgpool(x), 1)  # [N, out_dim]


def build_resnet2d(name: str) -> ResNet2dTrunk:
    """``resnet18`` (512-d), ``resnet50`` or ``resnet101`` (2048-d), randomly initialised."""
    try:
        builder = _TORCHVISION_BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown 2D ResNet {name!r}; known: {', '.join(_TORCHVISION_BUILDERS)}") from None
    # weights=None: nothing is ever downloaded; pretrained weights come from a local file.
    return ResNet2dTrunk(builder(weights=None))
