"""``efficientnet-b0`` .. ``b7``: MONAI ``EfficientNetBNFeatures`` (2-D, random init, never downloads).

Also the stage split shared with the EfficientNet-Lite family (:mod:`rlar.models.efficientnet_lite`), which is
built from the same MONAI ``EfficientNet`` pieces.
"""

from __future__ import annotations

import torch
from monai.networks.nets import EfficientNetBNFeatures
from monai.networks.nets.efficientnet import EfficientNet
from torch import nn

from .base import Encoder, stage_names
from .spec import named_specs

EFFICIENTNET_NAMES = tuple(f"efficientnet-b{i}" for i in range(8))

# MONAI's classification head: never used for features, so removed (parameters that never receive a gradient
# would confuse gradient-surgery strategies). ImageNet state dicts therefore report those keys as unexpected.
_HEAD_MODULES = ("_conv_head", "_conv_head_padding", "_bn1", "_avg_pooling", "_dropout", "_fc")


def _out_channels(block: nn.Module) -> int:
    """Output channels of a MONAI ``MBConvBlock`` (its projection conv's)."""
    project = block.get_submodule("_project_conv")
    if not isinstance(project, nn.Conv2d):
        raise TypeError(f"expected a 2-D MBConvBlock projection, got {type(project).__name__}")
    return int(project.out_channels)


class MonaiEfficientNetStages(Encoder):
    """A MONAI ``EfficientNet`` split at its feature points into five stages (strides 2, 4, 8, 16, 32).

    MONAI emits a feature map after block-stack ``i`` whenever ``i + 1`` is in ``net.extract_stacks`` (every stack
    followed by a stride-2 stack, plus the last one). Stage 0 is the stem plus the stacks up to the first
    extraction point, and so on. Subclasses may override :meth:`prepare` to transform the image first.
    """

    def __init__(self, net: EfficientNet, name: str) -> None:
        super().__init__()
        self.net = net
        for unused in _HEAD_MODULES:
            if hasattr(self.net, unused):
                delattr(self.net, unused)
        ends = sorted(i - 1 for i in self.net.extract_stacks if i > 0)
        groups: list[list[int]] = []
        start = 0
        for end in ends:
            groups.append(list(range(start, end + 1)))
            start = end + 1
        if len(groups) != 5:
            raise RuntimeError(f"{name}: expected 5 feature stages from MONAI, found {len(groups)}")
        self._groups = groups
        self.names = stage_names(5)
        stacks = list(self.net._blocks.children())
        self.channels = tuple(_out_channels(list(stacks[g[-1]].children())[-1]) for g in groups)
        self.strides = (2, 4, 8, 16, 32)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Image -> stem input (identity here)."""
        return x

    def run_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        if index == 0:
            x = self.prepare(x)
            x = net._swish(net._bn0(net._conv_stem(net._conv_stem_padding(x))))
        for stack in self._groups[index]:
            x = net._blocks[stack](x)
        return x

    def stage_modules(self, index: int) -> list[nn.Module]:
        net = self.net
        mods: list[nn.Module] = [net._conv_stem, net._bn0] if index == 0 else []
        return mods + [net._blocks[s] for s in self._groups[index]]

    def weights_module(self) -> nn.Module:
        return self.net


class EfficientNetEncoder(MonaiEfficientNetStages):
    """MONAI ``EfficientNetBNFeatures`` B0..B7 (random init), as ``EfficientNetEncoder`` does for FlexibleUNet."""

    def __init__(self, name: str, in_channels: int = 1) -> None:
        if name not in EFFICIENTNET_NAMES:
            raise ValueError(f"unknown EfficientNet backbone '{name}'; choose from {EFFICIENTNET_NAMES}")
        net = EfficientNetBNFeatures(name, pretrained=False, spatial_dims=2, in_channels=in_channels)
        # The memory-efficient swish is a custom autograd Function without double-backward; the plain one lets
        # strategies differentiate through gradients (create_graph=True) if they need to.
        net.set_swish(memory_efficient=False)
        super().__init__(net, name)


SPECS = named_specs(
    EFFICIENTNET_NAMES, EfficientNetEncoder, "efficientnet",
    lambda name: f"MONAI EfficientNetBNFeatures {name[-2:].upper()} (swish, squeeze-excitation), strides 2..32",
    licence="Apache-2.0 (MONAI)",
)
