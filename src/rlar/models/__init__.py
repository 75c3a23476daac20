"""Networks: :func:`build_model` assembles an encoder, a U-Net decoder and a TI-RADS branch into an :class:`RlarNet`.

Example::

    model = build_model("multitask", backbone="compact", num_classes=6)
    out = model(images)                       # MultitaskOutput(mask_logits, class_logits, h_tirads, h_deep, ...)
    out = model(images, cut_at="bottleneck")  # heads computed from detached leaves; see rlar.models.multitask
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .convnext import ConvNeXtEncoder
from .decoder import UNetDecoder
from .encoders import EFFICIENTNET_NAMES, RESNET_NAMES, CompactEncoder, EfficientNetEncoder, Encoder, ResNetEncoder
from .heads import ClassificationBranch
from .multitask import ARCHS, RlarNet
from .output import MultitaskOutput
from .weights import LoadReport, load_pretrained, read_state_dict

BACKBONES = ("compact",) + RESNET_NAMES + EFFICIENTNET_NAMES + ("convnext",)

__all__ = [
    "ARCHS",
    "BACKBONES",
    "ClassificationBranch",
    "ConvNeXtEncoder",
    "Encoder",
    "LoadReport",
    "MultitaskOutput",
    "RlarNet",
    "UNetDecoder",
    "build_encoder",
    "build_model",
    "load_pretrained",
    "read_state_dict",
]


def build_encoder(
    backbone: str,
    in_channels: int = 1,
    *,
    compact_channels: Sequence[int] = (16, 32, 64, 128),
    bottleneck_channels: int | None = None,
    norm: str | tuple = "batch",
    act: str | tuple = "relu",
    encoder_dropout: float = 0.0,
    convnext_depths: Sequence[int] = (2, 2, 4, 2),
    convnext_dims: Sequence[int] = (32, 64, 128, 256),
    drop_path_rate: float = 0.0,
) -> Encoder:
    """Construct the staged encoder named ``backbone`` (one of :data:`BACKBONES`), randomly initialised."""
    if backbone == "compact":
        return CompactEncoder(
            in_channels, compact_channels, bottleneck_channels, norm=norm, act=act, dropout=encoder_dropout
        )
    if backbone in RESNET_NAMES:
        return ResNetEncoder(backbone, in_channels)
    if backbone in EFFICIENTNET_NAMES:
        return EfficientNetEncoder(backbone, in_channels)
    if backbone == "convnext":
        return ConvNeXtEncoder(in_channels, convnext_depths, convnext_dims, drop_path_rate=drop_path_rate)
    raise ValueError(f"unknown backbone '{backbone}'; choose from {list(BACKBONES)}")


def build_model(
    arch: str = "multitask",
    backbone: str = "compact",
    num_classes: int = 6,
    in_channels: int = 1,
    tirads_dim: int = 13,
    deep_dim: int = 32,
    pretrained_path: str | Path | None = None,
    *,
    cls_levels: Sequence[str] = ("bottleneck",),
    head_hidden: int | None = None,
    cls_dropout: float = 0.0,
    decoder_channels: Sequence[int] | None = None,
    pad_mode: str = "reflect",
    **encoder_kw: Any,
) -> RlarNet:
    """Build a network.

    Args:
        arch: "multitask" (decoder + TI-RADS branch), "segmentation" (decoder only; class_logits None) or
            "classification" (TI-RADS branch only, with the h_tirads/h_deep split; mask_logits None).
        backbone: "compact" (CPU-sized default), "resnet18/34/50", "efficientnet-b0".."b7", or "convnext".
        num_classes: TI-RADS classes of the label space.
        in_channels: image channels (1: greyscale ultrasound).
        tirads_dim: size of the radiomics-guided embedding part h_tirads (13 TI-RADS-aligned features).
        deep_dim: size of the free embedding part h_deep.
        pretrained_path: local state-dict file for the network or its backbone (never downloaded); see
            :mod:`rlar.models.weights`. The load report is kept as ``model.pretrained_report``.
        cls_levels: encoder maps pooled by the classification branch, e.g. ("enc4", "bottleneck") to add mid-level
            features (names from ``model.representation_names``; ConvNeXt has enc1..enc3 + bottleneck).
        head_hidden: hidden width of an MLP TI-RADS head (None: linear head).
        cls_dropout: dropout in the classification branch.
        decoder_channels: channels of each decoder step, deepest first (default derived from the encoder).
        pad_mode: "reflect" (default), "constant", "replicate" or "error" for inputs not a multiple of the stride.
        **encoder_kw: passed to :func:`build_encoder` (compact_channels, bottleneck_channels, norm, act,
            encoder_dropout, convnext_depths, convnext_dims, drop_path_rate).
    """
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got '{arch}'")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    allowed = set(build_encoder.__kwdefaults__ or {})
    unknown = sorted(set(encoder_kw) - allowed)
    if unknown:
        raise TypeError(f"build_model got unknown option(s) {unknown}; encoder options are {sorted(allowed)}")
    encoder = build_encoder(backbone, in_channels, **encoder_kw)
    norm = encoder_kw.get("norm", "batch")
    act = encoder_kw.get("act", "relu")
    decoder = None
    if arch in ("multitask", "segmentation"):
        decoder = UNetDecoder(encoder.channels, encoder.strides, decoder_channels, out_channels=1, norm=norm, act=act)
    classifier = None
    if arch in ("multitask", "classification"):
        missing = [n for n in cls_levels if n not in encoder.names]
        if missing:
            raise ValueError(f"cls_levels {missing} are not stages of '{backbone}'; choose from {list(encoder.names)}")
        level_channels = [encoder.channels[encoder.names.index(n)] for n in cls_levels]
        classifier = ClassificationBranch(
            level_channels,
            num_classes,
            tirads_dim=tirads_dim,
            deep_dim=deep_dim,
            head_hidden=head_hidden,
            dropout=cls_dropout,
            pooled_norm=backbone == "convnext",
        )
    model = RlarNet(encoder, decoder, classifier, cls_levels, arch, backbone, in_channels, pad_mode)
    model.num_classes = int(num_classes)
    model.tirads_dim = int(tirads_dim) if classifier is not None else 0
    model.deep_dim = int(deep_dim) if classifier is not None else 0
    model.pretrained_report = None
    if pretrained_path is not None:
        model.pretrained_report = load_pretrained(model, pretrained_path, backbone=encoder.weights_module())
    return model
