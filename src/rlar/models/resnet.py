"""``resnet18/34/50``: MONAI ``ResNetFeatures`` (2-D, random init) split into its five feature stages."""

from __future__ import annotations

import torch
from monai.networks.nets import ResNetFeatures
from torch import nn

from .base import Encoder, stage_names
from .spec import named_specs

RESNET_NAMES = ("resnet18", "resnet34", "resnet50")


class ResNetEncoder(Encoder):
    """MONAI ``ResNetFeatures`` (2-D, random init) split into its five feature stages.

    Stage boundaries follow ``ResNetFeatures.forward``: stem (conv1-bn1-act, stride 2) | maxpool+layer1 (4) |
    layer2 (8) | layer3 (16) | layer4 (32), exactly the maps MONAI's own ``FlexibleUNet`` extracts. The MONAI module
    is kept intact as ``self.net`` so that a ResNet state dict with the library's own keys (``conv1.weight``,
    ``layer1.0.conv1.weight`` ...) loads into it directly.
    """

    def __init__(self, name: str, in_channels: int = 1) -> None:
        super().__init__()
        if name not in RESNET_NAMES:
            raise ValueError(f"unknown ResNet backbone '{name}'; choose from {RESNET_NAMES}")
        # pretrained=False: MONAI would otherwise try to download MedicalNet weights (3-D only anyway).
        self.net = ResNetFeatures(name, pretrained=False, spatial_dims=2, in_channels=in_channels)
        expansion = 4 if name == "resnet50" else 1
        self.names = stage_names(5)
        self.channels = (64, 64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion)
        self.strides = (2, 4, 8, 16, 32)

    def run_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        out: torch.Tensor  # the library's modules are called through nn.Module (untyped results)
        if index == 0:
            out = net.act(net.bn1(net.conv1(x)))
        elif index == 1:
            if not net.no_max_pool:
                x = net.maxpool(x)
            out = net.layer1(x)
        else:
            out = getattr(net, f"layer{index}")(x)
        return out

    def stage_modules(self, index: int) -> list[nn.Module]:
        net = self.net
        if index == 0:
            return [net.conv1, net.bn1, net.act]
        if index == 1:
            return [net.maxpool, net.layer1]
        return [getattr(net, f"layer{index}")]

    def weights_module(self) -> nn.Module:
        return self.net


SPECS = named_specs(
    RESNET_NAMES, ResNetEncoder, "resnet", lambda name: f"MONAI ResNetFeatures {name[6:]}-layer, strides 2..32",
    licence="Apache-2.0 (MONAI)",
)
