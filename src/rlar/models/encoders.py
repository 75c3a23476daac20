"""Backward-compatible names: the encoders now live one family per file (see :mod:`rlar.models.registry`).

* ``compact``: :mod:`rlar.models.compact`; ``resnet18/34/50``: :mod:`rlar.models.resnet`;
  ``efficientnet-b0..b7``: :mod:`rlar.models.efficientnet`; ``efficientnet-lite0..2``:
  :mod:`rlar.models.efficientnet_lite`; ``convnext``: :mod:`rlar.models.convnext`; the base class:
  :mod:`rlar.models.base`.
"""

from __future__ import annotations

from .base import Encoder, stage_names
from .compact import CompactEncoder
from .efficientnet import EFFICIENTNET_NAMES, EfficientNetEncoder
from .efficientnet_lite import EfficientNetLiteEncoder
from .resnet import RESNET_NAMES, ResNetEncoder

__all__ = [
    "EFFICIENTNET_NAMES",
    "RESNET_NAMES",
    "CompactEncoder",
    "EfficientNetEncoder",
    "EfficientNetLiteEncoder",
    "Encoder",
    "ResNetEncoder",
    "stage_names",
]
