"""Networks: :func:`build_model` assembles a registered backbone, a U-Net decoder and a TI-RADS branch into an
:class:`RlarNet`; :func:`predict_batch` turns images into probabilities.

Example::

    model = build_model("multitask", backbone="compact", num_classes=6)
    out = model(images)                       # MultitaskOutput(mask_logits, class_logits, h_tirads, h_deep, ...)
    out = model(images, cut_at="bottleneck")  # heads computed from detached leaves; see rlar.models.multitask
    pred = predict_batch(model.eval(), images, tta=True)  # Prediction(mask_prob, class_prob, h_tirads)

Backbones are listed once in :data:`BACKBONES` (name -> :class:`BackboneSpec`); adding one is one file plus one
line in :mod:`rlar.models.registry` (see docs/models.md).
"""

from __future__ import annotations

from .base import Encoder
from .build import build_model
from .convnext import ConvNeXtEncoder
from .decoder import UNetDecoder
from .heads import ClassificationBranch
from .multitask import ARCHS, RlarNet
from .options import BackboneOptionError, NetworkOptions, UnknownOptionError
from .output import MultitaskOutput
from .predict import Prediction, predict_batch
from .registry import BACKBONES, build_encoder, get_backbone, model_options_class, validate_backbone_options
from .spec import BackboneOptions, BackboneSpec
from .weights import LoadReport, load_pretrained, read_state_dict

__all__ = [
    "ARCHS",
    "BACKBONES",
    "BackboneOptionError",
    "BackboneOptions",
    "BackboneSpec",
    "ClassificationBranch",
    "ConvNeXtEncoder",
    "Encoder",
    "LoadReport",
    "MultitaskOutput",
    "NetworkOptions",
    "Prediction",
    "RlarNet",
    "UNetDecoder",
    "UnknownOptionError",
    "build_encoder",
    "build_model",
    "get_backbone",
    "load_pretrained",
    "model_options_class",
    "predict_batch",
    "read_state_dict",
    "validate_backbone_options",
]
