"""A small ConvNeXt (Liu et al., "A ConvNet for the 2020s", CVPR 2022) for the classification baseline.

No installed library offers a ConvNeXt that works here (torchvision/timm are unavailable), so this is a compact
re-implementation of the published block:

    x -> depthwise 7x7 conv -> LayerNorm (over channels) -> 1x1 conv to 4C (inverted bottleneck) -> GELU
      -> 1x1 conv back to C -> layer scale (gamma, init 1e-6) -> stochastic depth -> + x

Stem: 4x4 stride-4 "patchify" conv + LayerNorm. Between stages: LayerNorm + 2x2 stride-2 conv. Stage outputs are
exposed as an :class:`~rlar.models.base.Encoder` (names enc1, enc2, enc3, bottleneck at strides 4, 8, 16, 32), so
the same network can also feed the U-Net decoder.

The CPU-sized default is depths (2, 2, 4, 2) and dims (32, 64, 128, 256) (~1.9 M parameters as a classifier);
ConvNeXt-T is depths (3, 3, 9, 3), dims (96, 192, 384, 768).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers import DropPath
from pydantic import Field, ValidationInfo, field_validator
from torch import nn

from .base import Encoder, stage_names
from .options import NetworkOptions
from .spec import BackboneOptions, BackboneSpec


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dimension of a (B, C, H, W) tensor (ConvNeXt's "channels_first" LayerNorm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """One ConvNeXt block (see module docstring)."""

    def __init__(self, dim: int, drop_path: float = 0.0, layer_scale_init: float = 1e-6) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)  # applied channels-last, as in the reference implementation
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        # Layer scale: a per-channel gain initialised near zero so each block starts close to the identity.
        self.gamma = nn.Parameter(layer_scale_init * torch.ones(dim)) if layer_scale_init > 0 else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)  # (B, H, W, C): Linear layers act as 1x1 convs
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        if self.gamma is not None:
            y = self.gamma * y
        residual: torch.Tensor = self.drop_path(y.permute(0, 3, 1, 2))
        return x + residual


class ConvNeXtEncoder(Encoder):
    """ConvNeXt stages as an rlar encoder.

    Args:
        in_channels: image channels (1 for greyscale ultrasound).
        depths: blocks per stage.
        dims: channels per stage.
        drop_path_rate: stochastic-depth rate, increased linearly over blocks up to this value (0 disables it).
        layer_scale_init: initial layer-scale value (0 disables layer scale).
    """

    def __init__(
        self,
        in_channels: int = 1,
        depths: Sequence[int] = (2, 2, 4, 2),
        dims: Sequence[int] = (32, 64, 128, 256),
        drop_path_rate: float = 0.0,
        layer_scale_init: float = 1e-6,
    ) -> None:
        super().__init__()
        depths, dims = tuple(int(d) for d in depths), tuple(int(d) for d in dims)
        if len(depths) != len(dims) or len(dims) < 2:
            raise ValueError(
                f"convnext_depths {depths} and convnext_dims {dims} must have the same length (at least 2)"
            )
        if any(d <= 0 for d in depths + dims):
            raise ValueError(f"convnext_depths {depths} and convnext_dims {dims} must be positive")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.downsample = nn.ModuleList()
        self.downsample.append(
            nn.Sequential(nn.Conv2d(in_channels, dims[0], kernel_size=4, stride=4), LayerNorm2d(dims[0], eps=1e-6))
        )
        for i in range(1, len(dims)):
            self.downsample.append(
                nn.Sequential(LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], dims[i], 2, stride=2))
            )
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.stages = nn.ModuleList()
        k = 0
        for depth, dim in zip(depths, dims):
            blocks = [ConvNeXtBlock(dim, rates[k + j], layer_scale_init) for j in range(depth)]
            self.stages.append(nn.Sequential(*blocks))
            k += depth
        self.names = stage_names(len(dims))
        self.channels = dims
        self.strides = tuple(4 * 2**i for i in range(len(dims)))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # Reference initialisation: truncated normal (std 0.02) for conv/linear weights, zero biases.
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def run_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.stages[index](self.downsample[index](x))
        return out

    def stage_modules(self, index: int) -> list[nn.Module]:
        return [self.downsample[index], self.stages[index]]


class ConvNeXtOptions(BackboneOptions):
    """convnext_depths: blocks per stage; convnext_dims: channels per stage (same length, at least 2);
    drop_path_rate: stochastic-depth rate reached by the last block."""

    convnext_depths: tuple[int, ...] = (2, 2, 4, 2)
    convnext_dims: tuple[int, ...] = (32, 64, 128, 256)
    drop_path_rate: float = Field(0.0, ge=0.0, lt=1.0)

    @field_validator("convnext_dims")
    @classmethod
    def _shapes(cls, dims: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        depths = info.data.get("convnext_depths", ())
        if len(depths) != len(dims) or len(dims) < 2:
            raise ValueError(f"convnext_depths {list(depths)} and convnext_dims {list(dims)} must have the same "
                             "length (at least 2)")
        if any(d <= 0 for d in depths + dims):
            raise ValueError(f"convnext_depths {list(depths)} and convnext_dims {list(dims)} must be positive")
        return dims


def _build(in_channels: int, options: ConvNeXtOptions, network: NetworkOptions) -> Encoder:
    return ConvNeXtEncoder(in_channels, options.convnext_depths, options.convnext_dims,
                           drop_path_rate=options.drop_path_rate)


SPECS = (
    BackboneSpec(
        name="convnext", options=ConvNeXtOptions, build=_build, family="convnext",
        description="small ConvNeXt (Liu et al. 2022), strides 4..32; LayerNorm on the pooled vector",
        pooled_norm=True,
    ),
)
