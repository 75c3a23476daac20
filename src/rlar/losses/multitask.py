"""MultitaskLoss: the weighted per-task losses a network's output supports, as a dict for the strategies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ._common import as_bool_vector, batch_tensor
from .classification import ClassificationLoss
from .guidance import RadiomicsGuidanceLoss
from .segmentation import SegmentationLoss

if TYPE_CHECKING:  # annotation only: keeps importing the losses free of the network code
    from rlar.models.output import MultitaskOutput


class MultitaskLoss(nn.Module):
    """Compute ``{"seg": w_seg * L_seg, "cls": w_cls * L_cls, "rad": w_rad * L_rad}`` for one batch.

    Keys are present only for losses the model produces: "seg" needs ``out.mask_logits``, "cls" needs
    ``out.class_logits``, "rad" needs ``out.h_tirads`` and ``rad_weight > 0`` (guidance off otherwise). Values are
    scalar tensors, already weighted; a loss with no valid sample in the batch is an exact 0 that is still part of
    the graph. Batch keys (see docs/interfaces.md): ``mask``, ``has_mask`` (seg); ``label`` (cls);
    ``radiomics``, ``has_radiomics`` (rad; samples must also have ``has_mask`` when the batch carries it, since
    radiomics are only defined from a mask).

    Args:
        seg_weight, cls_weight, rad_weight: task weights (>= 0).
        class_weights: optional per-class cross-entropy weights.
        label_smoothing: cross-entropy label smoothing in [0, 1).
        dice_weight, bce_weight: mix of Dice and BCE inside the segmentation loss.
        rad_feature_mask: (13,) bool, radiomics features supervised by L_rad (leave-one-feature-out studies).
    """

    def __init__(
        self,
        seg_weight: float = 1.0,
        cls_weight: float = 1.0,
        rad_weight: float = 1.0,
        class_weights: Sequence[float] | torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        dice_weight: float = 1.0,
        bce_weight: float = 1.0,
        rad_feature_mask: Sequence[bool] | torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("seg_weight", seg_weight), ("cls_weight", cls_weight), ("rad_weight", rad_weight)):
            if not value >= 0:  # also rejects NaN
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.seg_weight = float(seg_weight)
        self.cls_weight = float(cls_weight)
        self.rad_weight = float(rad_weight)
        self.seg_loss = SegmentationLoss(dice_weight=dice_weight, bce_weight=bce_weight)
        self.cls_loss = ClassificationLoss(class_weights=class_weights, label_smoothing=label_smoothing)
        self.rad_loss = RadiomicsGuidanceLoss(feature_mask=rad_feature_mask)

    def forward(self, out: MultitaskOutput, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Weighted losses for the tasks ``out`` supports (see class docstring)."""
        losses: dict[str, torch.Tensor] = {}
        if out.mask_logits is not None:
            logits = out.mask_logits
            mask = batch_tensor(batch, "mask", "segmentation loss", logits.device)
            has_mask = as_bool_vector(
                batch_tensor(batch, "has_mask", "segmentation loss", logits.device), logits.shape[0], "has_mask"
            )
            losses["seg"] = self.seg_weight * self.seg_loss(logits, mask, has_mask)
        if out.class_logits is not None:
            logits = out.class_logits
            labels = batch_tensor(batch, "label", "classification loss", logits.device)
            losses["cls"] = self.cls_weight * self.cls_loss(logits, labels)
        if out.h_tirads is not None and self.rad_weight > 0:
            h = out.h_tirads
            target = batch_tensor(batch, "radiomics", "radiomics guidance loss", h.device)
            valid = as_bool_vector(
                batch_tensor(batch, "has_radiomics", "radiomics guidance loss", h.device), h.shape[0], "has_radiomics"
            )
            if "has_mask" in batch:
                valid = valid & as_bool_vector(batch_tensor(batch, "has_mask", "radiomics guidance loss", h.device),
                                               h.shape[0], "has_mask")
            losses["rad"] = self.rad_weight * self.rad_loss(h, target, valid)
        return losses

    def extra_repr(self) -> str:
        return f"seg_weight={self.seg_weight}, cls_weight={self.cls_weight}, rad_weight={self.rad_weight}"
