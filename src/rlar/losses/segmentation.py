"""Segmentation loss: soft Dice + binary cross-entropy on nodule logits, over the samples that have a mask."""

from __future__ import annotations

import torch
from monai.losses import DiceCELoss
from torch import nn

from ._common import graph_zero


class SegmentationLoss(nn.Module):
    """``dice_weight * Dice + bce_weight * BCE`` (MONAI ``DiceCELoss`` with ``sigmoid=True``).

    Dice is computed per sample and averaged over the valid samples (MONAI's ``batch=False``), with MONAI's default
    smoothing (1e-5), so an empty ground-truth mask predicted empty scores ~0 loss rather than NaN. BCE is the
    mean over all pixels of the valid samples. Samples whose ``has_mask`` is False are left out entirely (their
    ``mask`` is a placeholder); a batch with none gives an exact 0 still attached to the graph.
    """

    def __init__(self, dice_weight: float = 1.0, bce_weight: float = 1.0) -> None:
        super().__init__()
        if dice_weight < 0 or bce_weight < 0 or dice_weight + bce_weight == 0:
            raise ValueError(f"dice_weight ({dice_weight}) and bce_weight ({bce_weight}) must be >= 0, not both 0")
        self.dice_weight = float(dice_weight)
        self.bce_weight = float(bce_weight)
        self.dice_ce = DiceCELoss(sigmoid=True, lambda_dice=self.dice_weight, lambda_ce=self.bce_weight)

    def forward(self, logits: torch.Tensor, mask: torch.Tensor, has_mask: torch.Tensor) -> torch.Tensor:
        """``logits``: (B, 1, H, W); ``mask``: (B, 1, H, W) in {0, 1}; ``has_mask``: (B,) bool."""
        if logits.ndim != 4 or logits.shape[1] != 1:
            raise ValueError(f"mask logits must have shape (B, 1, H, W), got {tuple(logits.shape)}")
        if mask.ndim == 3:
            mask = mask.unsqueeze(1)
        if mask.shape != logits.shape:
            raise ValueError(
                f"batch['mask'] has shape {tuple(mask.shape)} but the mask logits have shape {tuple(logits.shape)}"
            )
        valid = has_mask.bool()
        if not bool(valid.any()):
            return graph_zero(logits)
        loss: torch.Tensor = self.dice_ce(logits[valid], mask[valid].to(logits.dtype))
        return loss
