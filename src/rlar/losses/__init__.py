"""Task losses: segmentation (Dice + BCE), TI-RADS classification (CE), radiomics guidance (MSE), and their
weighted combination :class:`MultitaskLoss` used by every training strategy."""

from __future__ import annotations

from ._common import graph_zero
from .classification import ClassificationLoss
from .guidance import RadiomicsGuidanceLoss
from .multitask import MultitaskLoss
from .segmentation import SegmentationLoss

__all__ = ["ClassificationLoss", "MultitaskLoss", "RadiomicsGuidanceLoss", "SegmentationLoss", "graph_zero"]
