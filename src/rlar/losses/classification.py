"""Classification loss: cross-entropy on TI-RADS logits, ignoring samples whose label is unknown (-1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._common import graph_zero

UNKNOWN = -1


class ClassificationLoss(nn.Module):
    """Cross-entropy with ``ignore_index=-1``, optional class weights and label smoothing.

    With class weights the mean is weighted (PyTorch's convention: sum of w_y * loss / sum of w_y over the labelled
    samples). A batch in which every label is unknown gives an exact 0 still attached to the graph (PyTorch would
    return NaN).
    """

    class_weights: torch.Tensor | None

    def __init__(
        self, class_weights: Sequence[float] | torch.Tensor | None = None, label_smoothing: float = 0.0,
        target_key: str = "label",
    ) -> None:
        super().__init__()
        # The batch key of the labels, named by error messages (an ACR descriptor task reads its own key).
        self.target_key = target_key
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        weights = None
        if class_weights is not None:
            weights = torch.as_tensor(class_weights, dtype=torch.float32).flatten()
            if weights.numel() == 0 or bool((weights < 0).any()) or not bool(torch.isfinite(weights).all()):
                raise ValueError(f"class_weights must be finite and non-negative, got {weights.tolist()}")
        # A buffer moves with .to(device) and is saved with the loss' state.
        self.register_buffer("class_weights", weights)

    def forward(
        self, logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``logits``: (B, C); ``labels``: (B,) int64 class indices, -1 for unknown; ``valid``: optional (B,) bool
        of the samples to use (the task table's validity; a label of -1 is never used either way)."""
        if logits.ndim != 2:
            raise ValueError(f"class logits must have shape (B, C), got {tuple(logits.shape)}")
        if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
            raise ValueError(
                f"batch['{self.target_key}'] must have shape ({logits.shape[0]},), got {tuple(labels.shape)}"
            )
        labels = labels.long()
        n_classes = logits.shape[1]
        bad = labels[(labels < UNKNOWN) | (labels >= n_classes)]
        if bad.numel():
            raise ValueError(
                f"batch['{self.target_key}'] holds {sorted(set(bad.tolist()))}: labels must be -1 (unknown) or "
                f"0..{n_classes - 1}"
            )
        weight = self.class_weights
        if weight is not None and weight.numel() != n_classes:
            raise ValueError(f"class_weights has {weight.numel()} entries but the model predicts {n_classes} classes")
        if valid is not None:
            labels = torch.where(valid.to(labels.device).bool(), labels, torch.full_like(labels, UNKNOWN))
        if not bool((labels != UNKNOWN).any()):
            return graph_zero(logits)
        return F.cross_entropy(
            logits,
            labels,
            weight=None if weight is None else weight.to(logits.dtype),
            ignore_index=UNKNOWN,
            label_smoothing=self.label_smoothing,
        )
