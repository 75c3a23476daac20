"""Radiomics guidance L_rad: h_tirads should match the standardised TI-RADS radiomics vector
(``rlar.tasks.RADIOMICS_DIM`` features)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._common import graph_zero


class RadiomicsGuidanceLoss(nn.Module):
    """Mean squared error between ``h_tirads`` and the radiomics target over the samples that have one.

    The mean runs over valid samples and feature dimensions. Radiomics are computed from image + mask, so samples
    without a target (no mask, or extraction impossible) contribute nothing; a batch with none gives an exact 0
    still attached to the graph.

    ``feature_mask`` (D,) bool, for leave-one-feature-out studies: only the kept dimensions are supervised; a
    left-out dimension of h_tirads receives no guidance (it becomes a free dimension, like h_deep), rather than
    being pulled towards an uninformative constant.
    """

    feature_mask: torch.Tensor | None

    def __init__(self, feature_mask: torch.Tensor | Sequence[bool] | None = None) -> None:
        super().__init__()
        mask = None if feature_mask is None else torch.as_tensor(feature_mask, dtype=torch.bool)
        if mask is not None and (mask.ndim != 1 or not bool(mask.any())):
            raise ValueError(f"feature_mask must be a 1-D bool vector keeping at least one feature, got {mask}")
        self.register_buffer("feature_mask", mask)

    def forward(self, h_tirads: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``h_tirads``: (B, D); ``target``: (B, D) standardised features; ``valid``: (B,) bool."""
        if h_tirads.ndim != 2:
            raise ValueError(f"h_tirads must have shape (B, D), got {tuple(h_tirads.shape)}")
        if target.shape != h_tirads.shape:
            raise ValueError(
                f"batch['radiomics'] has shape {tuple(target.shape)} but h_tirads has shape {tuple(h_tirads.shape)}; "
                "tirads_dim must equal the number of radiomics features"
            )
        if self.feature_mask is not None:
            if self.feature_mask.numel() != h_tirads.shape[1]:
                raise ValueError(
                    f"feature_mask has {self.feature_mask.numel()} entries but h_tirads has {h_tirads.shape[1]} dims"
                )
            h_tirads, target = h_tirads[:, self.feature_mask], target[:, self.feature_mask]
        valid = valid.bool()
        if not bool(valid.any()):
            return graph_zero(h_tirads)
        return F.mse_loss(h_tirads[valid], target[valid].to(h_tirads.dtype))
