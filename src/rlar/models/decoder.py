"""U-Net decoder on top of any :class:`~rlar.models.base.Encoder`.

From the bottleneck upwards, each step doubles the resolution with a MONAI ``UpSample`` (transposed conv), concatenates
the encoder feature map of the same resolution (skip connection) and mixes with two MONAI ``Convolution`` blocks.
Encoders whose finest feature map is not at full resolution (ResNet/EfficientNet: stride 2, ConvNeXt: stride 4) get
extra upsampling steps without a skip, as in MONAI's ``FlexibleUNet``. A final 1x1 convolution gives the nodule
logits (B, 1, H, W). With ``deep_supervision=k``, 1x1 convolutions on the outputs of the k steps before the last
give coarser nodule logits too (:meth:`UNetDecoder.forward_with_aux`), which the network upsamples to the input
size for the segmentation loss during training (deep supervision, as in nnU-Net).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution, UpSample
from torch import nn


class DecoderBlock(nn.Module):
    """Upsample x2, optionally concatenate a skip feature map, then two conv-norm-act blocks."""

    def __init__(
        self, in_channels: int, skip_channels: int, out_channels: int, norm: str | tuple, act: str | tuple
    ) -> None:
        super().__init__()
        self.up = UpSample(
            spatial_dims=2, in_channels=in_channels, out_channels=out_channels, scale_factor=2, mode="deconv"
        )
        self.conv = nn.Sequential(
            Convolution(2, out_channels + skip_channels, out_channels, kernel_size=3, norm=norm, act=act),
            Convolution(2, out_channels, out_channels, kernel_size=3, norm=norm, act=act),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.up(x)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        out: torch.Tensor = self.conv(x)
        return out


class UNetDecoder(nn.Module):
    """Decoder for an encoder with feature channels ``encoder_channels`` at strides ``encoder_strides``.

    Args:
        encoder_channels: channels of enc1..bottleneck.
        encoder_strides: strides of enc1..bottleneck (powers of two, each twice the previous).
        decoder_channels: output channels of each upsampling step, deepest first; default: the skip's channels
            (capped at 256) for skip steps and 16 for the extra full-resolution steps.
        out_channels: 1 for binary nodule segmentation.
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        encoder_strides: Sequence[int],
        decoder_channels: Sequence[int] | None = None,
        out_channels: int = 1,
        norm: str | tuple = "batch",
        act: str | tuple = "relu",
        deep_supervision: int = 0,
    ) -> None:
        super().__init__()
        strides = list(encoder_strides)
        for a, b in zip(strides, strides[1:]):
            if b != 2 * a:
                raise ValueError(f"encoder strides must double at each stage, got {strides}")
        n_skip = len(strides) - 1  # every stage but the bottleneck is a skip
        n_extra = int(round(math.log2(strides[0])))  # steps from the finest skip up to full resolution
        n_steps = n_skip + n_extra
        skips = list(encoder_channels[:-1])[::-1] + [0] * n_extra
        if decoder_channels is None:
            decoder_channels = [min(c, 256) for c in skips[:n_skip]] + [16] * n_extra
        decoder_channels = [int(c) for c in decoder_channels]
        if len(decoder_channels) != n_steps:
            raise ValueError(
                f"decoder_channels needs {n_steps} entries (one per upsampling step, deepest first), "
                f"got {len(decoder_channels)}: {decoder_channels}"
            )
        blocks = []
        prev = encoder_channels[-1]
        for skip_c, out_c in zip(skips, decoder_channels):
            blocks.append(DecoderBlock(prev, skip_c, out_c, norm, act))
            prev = out_c
        self.blocks = nn.ModuleList(blocks)
        self.n_skip = n_skip
        self.head = Convolution(2, prev, out_channels, kernel_size=1, conv_only=True)
        if not 0 <= deep_supervision < n_steps:
            raise ValueError(f"deep_supervision must be in [0, {n_steps - 1}] for this decoder of {n_steps} steps, "
                             f"got {deep_supervision}")
        # aux_heads[j] reads the output of step n_steps - 2 - j (the step before the last first).
        self.aux_heads = nn.ModuleList(
            Convolution(2, decoder_channels[n_steps - 2 - j], out_channels, kernel_size=1, conv_only=True)
            for j in range(deep_supervision)
        )

    def forward_with_aux(self, features: Sequence[torch.Tensor], with_aux: bool = True
                         ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The nodule logits and the deep-supervision logits, finest first (each at its own step's resolution;
        an empty list when ``with_aux`` is False or the decoder has no auxiliary heads)."""
        x = features[-1]
        skips = list(features[:-1])[::-1]
        keep = with_aux and len(self.aux_heads) > 0  # a plain forward holds no step outputs
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x, skips[i] if i < self.n_skip else None)
            if keep:
                outputs.append(x)
        aux = [head(outputs[len(outputs) - 2 - j]) for j, head in enumerate(self.aux_heads)] if keep else []
        return self.head(x), aux

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """``features``: enc1..bottleneck, fine to coarse (the tensors the decoder consumes)."""
        return self.forward_with_aux(features, with_aux=False)[0]
