"""Multi-scale encoders shared by every rlar network.

Every encoder is split into named *stages*: stage ``i`` maps the output of stage ``i - 1`` (or the image) to the
feature map named ``names[i]``. The last stage is always ``"bottleneck"``; the earlier ones are ``"enc1"``,
``"enc2"``, ... from fine to coarse. Splitting the encoder this way (instead of calling a library's all-in-one
``forward`` that returns a list) is what lets :class:`rlar.models.multitask.RlarNet` cut the graph at any named
representation: the stages after the cut are re-run from a detached leaf and their parameters count as head
parameters.

Backbones:

* ``compact``: four MONAI ``ResidualUnit`` stages (16, 32, 64, 128 channels; enc1 at full resolution) plus a
  bottleneck stage at stride 16. Small enough to train on a laptop CPU.
* ``resnet18/34/50``: MONAI ``ResNetFeatures`` (2-D), features at strides 2, 4, 8, 16, 32, exactly the maps MONAI's
  own ``FlexibleUNet`` extracts (``ResNetEncoder``).
* ``efficientnet-b0`` .. ``b7``: MONAI ``EfficientNetBNFeatures`` (2-D, no download), features after the stacks
  listed in its ``extract_stacks`` (strides 2, 4, 8, 16, 32), as ``EfficientNetEncoder`` does for FlexibleUNet.
* ``convnext``: see :mod:`rlar.models.convnext` (strides 4, 8, 16, 32).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import ResidualUnit
from monai.networks.nets import EfficientNetBNFeatures, ResNetFeatures
from torch import nn

RESNET_NAMES = ("resnet18", "resnet34", "resnet50")
EFFICIENTNET_NAMES = tuple(f"efficientnet-b{i}" for i in range(8))


def stage_names(n_stages: int) -> tuple[str, ...]:
    """``("enc1", ..., "enc{n-1}", "bottleneck")`` for an encoder with ``n_stages`` stages."""
    return tuple(f"enc{i + 1}" for i in range(n_stages - 1)) + ("bottleneck",)


class Encoder(nn.Module):
    """Base class: an encoder made of sequential named stages.

    Subclasses set ``names``, ``channels`` (output channels per stage) and ``strides`` (total stride of each
    stage's output w.r.t. the input), and implement :meth:`run_stage` and :meth:`stage_modules`.
    """

    names: tuple[str, ...]
    channels: tuple[int, ...]
    strides: tuple[int, ...]

    def run_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Apply stage ``index`` to ``x`` (the previous stage's output, or the image for stage 0)."""
        raise NotImplementedError

    def stage_modules(self, index: int) -> list[nn.Module]:
        """Modules whose parameters belong to stage ``index`` (used to split trunk and head parameters)."""
        raise NotImplementedError

    def weights_module(self) -> nn.Module:
        """The module a backbone state dict (e.g. ImageNet weights) is loaded into; its keys are the library's."""
        return self

    def stage_parameters(self, index: int) -> list[nn.Parameter]:
        """Parameters of stage ``index``."""
        return [p for m in self.stage_modules(index) for p in m.parameters()]

    @property
    def stride(self) -> int:
        """Total stride of the deepest feature map: inputs must be a multiple of it (RlarNet pads for you)."""
        return self.strides[-1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """All stage outputs, fine to coarse (the encoder used on its own, without a cut)."""
        feats = []
        for i in range(len(self.names)):
            x = self.run_stage(i, x)
            feats.append(x)
        return feats


class CompactEncoder(Encoder):
    """Small residual encoder built from MONAI ``ResidualUnit`` blocks.

    ``channels`` gives enc1..encN; enc1 keeps the full resolution (so the U-Net's finest skip has full detail,
    which matters for small nodules) and every later stage halves it. The bottleneck halves the resolution once
    more and has ``bottleneck_channels`` channels (default: same as the last stage, to keep the model small).
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: Sequence[int] = (16, 32, 64, 128),
        bottleneck_channels: int | None = None,
        norm: str | tuple = "batch",
        act: str | tuple = "relu",
        dropout: float = 0.0,
        subunits: int = 2,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) < 1 or any(c <= 0 for c in channels):
            raise ValueError(f"compact encoder channels must be positive integers, got {channels}")
        bottleneck_channels = int(bottleneck_channels or channels[-1])
        all_channels = channels + (bottleneck_channels,)
        stages = []
        prev = in_channels
        for i, c in enumerate(all_channels):
            stages.append(
                ResidualUnit(
                    spatial_dims=2,
                    in_channels=prev,
                    out_channels=c,
                    strides=1 if i == 0 else 2,
                    kernel_size=3,
                    subunits=subunits,
                    norm=norm,
                    act=act,
                    dropout=dropout if dropout > 0 else None,
                )
            )
            prev = c
        self.stages = nn.ModuleList(stages)
        self.names = stage_names(len(all_channels))
        self.channels = all_channels
        self.strides = tuple(2**i for i in range(len(all_channels)))

    def run_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        return self.stages[index](x)

    def stage_modules(self, index: int) -> list[nn.Module]:
        return [self.stages[index]]


class ResNetEncoder(Encoder):
    """MONAI ``ResNetFeatures`` (2-D, random init) split into its five feature stages.

    Stage boundaries follow ``ResNetFeatures.forward``: stem (conv1-bn1-act, stride 2) | maxpool+layer1 (4) |
    layer2 (8) | layer3 (16) | layer4 (32). The MONAI module is kept intact as ``self.net`` so that a ResNet state
    dict with the library's own keys (``conv1.weight``, ``layer1.0.conv1.weight`` ...) loads into it directly.
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
        if index == 0:
            return net.act(net.bn1(net.conv1(x)))
        if index == 1:
            if not net.no_max_pool:
                x = net.maxpool(x)
            return net.layer1(x)
        return getattr(net, f"layer{index}")(x)

    def stage_modules(self, index: int) -> list[nn.Module]:
        net = self.net
        if index == 0:
            return [net.conv1, net.bn1, net.act]
        if index == 1:
            return [net.maxpool, net.layer1]
        return [getattr(net, f"layer{index}")]

    def weights_module(self) -> nn.Module:
        return self.net


class EfficientNetEncoder(Encoder):
    """MONAI ``EfficientNetBNFeatures`` (2-D, random init, never downloads) split at its feature points.

    ``EfficientNetBNFeatures.forward`` emits a feature map after block-stack ``i`` whenever ``i + 1`` is in
    ``extract_stacks`` (every stack followed by a stride-2 stack, plus the last one). Stage 0 is the stem plus the
    stacks up to the first extraction point, and so on. The classification head MONAI builds (``_conv_head``,
    ``_bn1``, ``_fc``) is never used for features, so it is removed: parameters that never receive a gradient
    would confuse gradient-surgery strategies. ImageNet state dicts therefore report those keys as unexpected.
    """

    def __init__(self, name: str, in_channels: int = 1) -> None:
        super().__init__()
        if name not in EFFICIENTNET_NAMES:
            raise ValueError(f"unknown EfficientNet backbone '{name}'; choose from {EFFICIENTNET_NAMES}")
        self.net = EfficientNetBNFeatures(name, pretrained=False, spatial_dims=2, in_channels=in_channels)
        # The memory-efficient swish is a custom autograd Function without double-backward; the plain one lets
        # strategies differentiate through gradients (create_graph=True) if they need to.
        self.net.set_swish(memory_efficient=False)
        for unused in ("_conv_head", "_conv_head_padding", "_bn1", "_avg_pooling", "_dropout", "_fc"):
            if hasattr(self.net, unused):
                delattr(self.net, unused)
        # Group block stacks into stages that end where MONAI extracts a feature map.
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
        self.channels = tuple(int(self.net._blocks[g[-1]][-1]._bn2.num_features) for g in groups)
        self.strides = (2, 4, 8, 16, 32)

    def run_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        if index == 0:
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
