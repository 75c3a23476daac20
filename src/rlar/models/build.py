"""``build_model``: backbone (from the registry) + U-Net decoder + TI-RADS branch -> :class:`RlarNet`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlar.tasks import EXTRA_TASKS_OPTION, RADIOMICS_DIM, TASKS

from .decoder import UNetDecoder
from .heads import ClassificationBranch
from .multitask import ARCHS, RlarNet
from .options import BackboneOptionError
from .registry import get_backbone, split_options, validate_backbone_options
from .weights import load_pretrained


def build_model(
    arch: str = "multitask",
    backbone: str = "compact",
    num_classes: int = 6,
    in_channels: int = 1,
    tirads_dim: int = RADIOMICS_DIM,
    deep_dim: int = 32,
    pretrained_path: str | Path | None = None,
    *,
    load_weights: bool = True,
    **options: Any,
) -> RlarNet:
    """Build a network.

    Args:
        arch: "multitask" (decoder + TI-RADS branch), "segmentation" (decoder only; class_logits None) or
            "classification" (TI-RADS branch only, with the h_tirads/h_deep split; mask_logits None).
        backbone: a name of :data:`rlar.models.BACKBONES` ("compact" is the CPU-sized default).
        num_classes: TI-RADS classes of the label space.
        in_channels: image channels (1: greyscale ultrasound).
        tirads_dim: size of the radiomics-guided embedding part h_tirads (``rlar.tasks.RADIOMICS_DIM`` features).
        deep_dim: size of the free embedding part h_deep.
        pretrained_path: local state-dict file for the network or its backbone (never downloaded); see
            :mod:`rlar.models.weights`. The load report is kept as ``model.pretrained_report``.
        **options: the flat ``model.options`` of a config: the network's options
            (:class:`~rlar.models.options.NetworkOptions`: cls_levels, cls_pooling, head_hidden, cls_dropout, decoder_channels, deep_supervision,
            pad_mode, norm, act) and the backbone's own (see docs/models.md), validated by
            :func:`~rlar.models.registry.validate_backbone_options`.
        load_weights: False when the network is rebuilt only to receive a checkpoint's state dict (inference,
            resume): options that only choose initial weights (``pretrained``) are ignored and
            ``pretrained_path`` is not read, so no weights package or file is needed.

    Raises:
        :class:`~rlar.models.options.BackboneOptionError` (a ConfigError) naming ``model.options.<key>`` or
        ``model.backbone`` (an ``UnknownOptionError``, also a TypeError, for an unknown option); ValueError for a
        bad arch or embedding size.
    """
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got '{arch}'")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    spec = get_backbone(backbone)
    own, network = split_options(backbone, validate_backbone_options(backbone, options))
    if not load_weights and spec.init_options:
        own = own.model_copy(update={k: spec.options.model_fields[k].default for k in spec.init_options})
    encoder = spec.build(in_channels, own, network)
    decoder = None
    if arch in ("multitask", "segmentation"):
        decoder = UNetDecoder(encoder.channels, encoder.strides, network.decoder_channels, out_channels=1,
                              norm=network.norm, act=network.act, deep_supervision=network.deep_supervision)
    classifier = None
    cls_levels = network.cls_levels
    unfit = [name for name in network.extra_tasks if arch not in TASKS[name].archs]
    if unfit:
        raise BackboneOptionError(f"model.options.{EXTRA_TASKS_OPTION}",
                                  f"task(s) {unfit} are heads on the classification embedding; arch '{arch}' has none "
                                  f"(use one of {list(TASKS[unfit[0]].archs)})")
    if arch in ("multitask", "classification"):
        if network.cls_pooling == "nodule" and decoder is None:
            raise BackboneOptionError(
                "model.options.cls_pooling",
                "'nodule' pools over the predicted nodule, so it needs the segmentation decoder (arch 'multitask')",
            )
        missing = [n for n in cls_levels if n not in encoder.names]
        if missing:
            raise BackboneOptionError(
                "model.options.cls_levels",
                f"cls_levels {missing} are not stages of '{backbone}'; choose from {list(encoder.names)}",
            )
        level_channels = [encoder.channels[encoder.names.index(n)] for n in cls_levels]
        classifier = ClassificationBranch(
            level_channels,
            num_classes,
            tirads_dim=tirads_dim,
            deep_dim=deep_dim,
            head_hidden=network.head_hidden,
            dropout=network.cls_dropout,
            pooled_norm=spec.pooled_norm,
            pooling=network.cls_pooling,
            strides=[encoder.strides[encoder.names.index(n)] for n in cls_levels],
            task_classes={name: len(TASKS[name].classes) for name in network.extra_tasks},
        )
    model = RlarNet(encoder, decoder, classifier, cls_levels, arch, backbone, in_channels, network.pad_mode)
    model.num_classes = int(num_classes)
    model.tirads_dim = int(tirads_dim) if classifier is not None else 0
    model.deep_dim = int(deep_dim) if classifier is not None else 0
    model.pretrained_report = None
    if pretrained_path is not None and load_weights:
        model.pretrained_report = load_pretrained(model, pretrained_path, backbone=encoder.weights_module(),
                                                  adapt=encoder.adapt_state_dict)
    return model
