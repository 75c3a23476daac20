"""Classification branch: pooled shared features -> embedding h = [h_tirads | h_deep] -> TI-RADS logits.

The embedding is split so that the first ``tirads_dim`` coordinates can be supervised to match the RADIOMICS_DIM TI-RADS-aligned
radiomics features (L_rad, :mod:`rlar.losses.guidance`) while the remaining ``deep_dim`` coordinates stay free. The
TI-RADS head reads the *whole* embedding, so the guided part is used for the decision rather than being a side
output. Optional classification tasks (the ACR descriptors, :mod:`rlar.tasks`) get a linear head each on the same
whole embedding, so they shape the shared representation the TI-RADS head reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from rlar.tasks import RADIOMICS_DIM

from .options import CLS_POOLINGS

# Floor of a nodule-weight sum, so an image with no predicted nodule pools to ~0 instead of dividing by zero.
_MIN_WEIGHT = 1e-6


class BranchOutput(NamedTuple):
    """What :class:`ClassificationBranch` returns."""

    class_logits: torch.Tensor
    h_tirads: torch.Tensor | None
    h_deep: torch.Tensor | None
    task_logits: dict[str, torch.Tensor]


class ClassificationBranch(nn.Module):
    """Average-pool the chosen feature maps (over the image, and with ``pooling="nodule"`` also over the predicted
    nodule), embed, and classify.

    Args:
        in_channels: channels of each pooled feature map (same order as the maps passed to ``forward``).
        num_classes: TI-RADS classes.
        tirads_dim: size of the radiomics-guided part of the embedding (0: none).
        deep_dim: size of the free part of the embedding (0: none).
        head_hidden: hidden width of an MLP TI-RADS head; None for a linear head.
        dropout: dropout applied to the pooled features and before the TI-RADS head (training only).
        pooled_norm: LayerNorm on the pooled vector (ConvNeXt's final norm; harmless elsewhere).
        pooling: "global", or "nodule": each map is pooled twice, over the whole image and weighted by the nodule
            probability passed to ``forward`` (:class:`~rlar.models.options.NetworkOptions`.cls_pooling).
        strides: total stride of each pooled map with respect to the nodule map (needed with ``pooling="nodule"``:
            the probability is averaged over stride x stride blocks, a fixed kernel that exporters can trace).
        task_classes: optional task name -> number of classes: one linear head each on the whole embedding (after
            the same dropout as the TI-RADS head). Built after every other layer, so a branch without them draws the
            same initial weights as before they existed.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        tirads_dim: int = RADIOMICS_DIM,
        deep_dim: int = 32,
        head_hidden: int | None = None,
        dropout: float = 0.0,
        pooled_norm: bool = False,
        pooling: str = "global",
        strides: Sequence[int] | None = None,
        task_classes: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        if pooling not in CLS_POOLINGS:
            raise ValueError(f"pooling must be one of {CLS_POOLINGS}, got '{pooling}'")
        if pooling == "nodule" and (strides is None or len(strides) != len(in_channels)):
            raise ValueError("pooling='nodule' needs the stride of every pooled map (one per entry of in_channels)")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if tirads_dim < 0 or deep_dim < 0 or tirads_dim + deep_dim == 0:
            raise ValueError(f"tirads_dim ({tirads_dim}) and deep_dim ({deep_dim}) must be >= 0 with a positive sum")
        self.pooling = pooling
        self.strides = tuple(int(k) for k in strides) if strides is not None else ()
        pooled = int(sum(in_channels)) * (2 if pooling == "nodule" else 1)
        self.tirads_dim = int(tirads_dim)
        self.deep_dim = int(deep_dim)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.norm = nn.LayerNorm(pooled) if pooled_norm else nn.Identity()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # No activation on the embedding: h_tirads regresses standardised (signed, unbounded) radiomics.
        self.embed = nn.Linear(pooled, tirads_dim + deep_dim)
        emb = tirads_dim + deep_dim
        if head_hidden:
            self.head: nn.Module = nn.Sequential(
                nn.Linear(emb, head_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(head_hidden, num_classes)
            )
        else:
            drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
            self.head = nn.Sequential(drop, nn.Linear(emb, num_classes))
        for name, count in (task_classes or {}).items():
            if count < 2:
                raise ValueError(f"task '{name}' needs at least 2 classes, got {count}")
        self.task_heads = nn.ModuleDict({
            name: nn.Sequential(nn.Dropout(dropout) if dropout > 0 else nn.Identity(), nn.Linear(emb, count))
            for name, count in (task_classes or {}).items()
        })

    def forward(
        self, features: Sequence[torch.Tensor], nodule: torch.Tensor | None = None
    ) -> BranchOutput:
        """Return (class_logits, h_tirads, h_deep, task_logits) from the feature maps to pool.

        ``nodule``: (B, 1, H, W) nodule probability on the grid the maps were computed from (needed, and only
        read, with ``pooling="nodule"``); it is averaged down to each map's size by its stride.
        """
        vectors = [self.pool(f).flatten(1) for f in features]
        if self.pooling == "nodule":
            if nodule is None:
                raise ValueError("pooling='nodule' needs the nodule probability map (the segmentation output)")
            for f, stride in zip(features, self.strides):
                weight = F.avg_pool2d(nodule.to(f.dtype), stride)  # stride 1: the map itself
                total = weight.sum(dim=(2, 3)).clamp_min(_MIN_WEIGHT)
                vectors.append((f * weight).sum(dim=(2, 3)) / total)
        pooled = torch.cat(vectors, dim=1)
        h = self.embed(self.dropout(self.norm(pooled)))
        h_tirads = h[:, : self.tirads_dim] if self.tirads_dim > 0 else None
        h_deep = h[:, self.tirads_dim :] if self.deep_dim > 0 else None
        # The head reads the two parts re-joined (same values as h), so that h_tirads and h_deep are themselves
        # nodes of the graph: gradients of the TI-RADS loss w.r.t. either part can be taken directly.
        parts = [p for p in (h_tirads, h_deep) if p is not None]
        joined = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        class_logits = self.head(joined)  # first: the TI-RADS head's dropout draws as it did without task heads
        task_logits = {name: head(joined) for name, head in self.task_heads.items()}
        return BranchOutput(class_logits, h_tirads, h_deep, task_logits)
