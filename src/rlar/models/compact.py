"""``compact``: a small residual encoder from MONAI ``ResidualUnit`` blocks, the CPU-sized default backbone."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import ResidualUnit
from pydantic import Field, field_validator
from torch import nn

from .base import Encoder, stage_names
from .options import LayerSpec, NetworkOptions
from .spec import BackboneOptions, BackboneSpec


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
        norm: LayerSpec = "batch",
        act: LayerSpec = "relu",
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
        out: torch.Tensor = self.stages[index](x)
        return out

    def stage_modules(self, index: int) -> list[nn.Module]:
        return [self.stages[index]]


class CompactOptions(BackboneOptions):
    """compact_channels: channels of enc1..encN (enc1 at full resolution); bottleneck_channels: channels of the
    bottleneck (None: same as the last stage); encoder_dropout: dropout inside the residual units."""

    compact_channels: tuple[int, ...] = Field((16, 32, 64, 128), min_length=1)
    bottleneck_channels: int | None = Field(None, ge=1)
    encoder_dropout: float = Field(0.0, ge=0.0, lt=1.0)

    @field_validator("compact_channels")
    @classmethod
    def _positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(c <= 0 for c in value):
            raise ValueError(f"channels must be positive, got {list(value)}")
        return value


def _build(in_channels: int, options: CompactOptions, network: NetworkOptions) -> Encoder:
    return CompactEncoder(
        in_channels, options.compact_channels, options.bottleneck_channels,
        norm=network.norm, act=network.act, dropout=options.encoder_dropout,
    )


SPECS = (
    BackboneSpec(
        name="compact", options=CompactOptions, build=_build, family="compact",
        description="4 MONAI ResidualUnit stages + bottleneck at stride 16, enc1 at full resolution (CPU default)",
    ),
)
