"""Where the tasks compete: per-layer, per-sample alignment of the segmentation and classification gradients.

The paper's premise is that the two tasks' gradients conflict in the shared representation. This probe measures
it on every encoder stage of the network (fine to coarse; the last is the bottleneck z), during training, on a
fixed batch of training images labelled for both tasks:

* ``cos``: per sample i, cos(dL_seg/dh_i, dL_cls/dh_i) over the whole map h of the layer (C*H*W values), its
  mean, 10th/50th/90th percentile and the mean of |cos| (a distribution, not only a mean: the sign can average
  out);
* ``chan_cos``: the same in the channel space (spatial mean of each channel's gradient: what a pooled classifier
  reads, and where RLAR's default compares the directions);
* ``log10_norm_ratio``: the median over samples of log10(||dL_seg/dh_i|| / ||dL_cls/dh_i||): how much one task
  dominates the other at that layer (0 = equal).

The probe runs in eval mode, so BatchNorm uses its running statistics and a sample's gradient is its own (in
train mode the batch statistics couple the samples); it draws no random numbers, so training is unchanged by it.
Its gradients are w.r.t. the encoder maps only: the decoder is read by segmentation alone (the classifier reads
encoder maps), so there is nothing for the tasks to compete for there. Cosines are scale-free
(:func:`rlar.strategies._cut.per_sample_cosine`): a task whose gradient is 1e-9 of the other's still has a
direction. One row per layer and measurement goes to ``competition.csv`` in the run folder.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from rlar.runs import COMPETITION_FILE
from rlar.strategies._cut import per_sample_cosine, unit_scaled
from rlar.tasks import TASK_GROUPS, TASKS
from rlar.training.logging import COMPETITION_STATS

#: Columns of ``competition.csv`` after ``epoch`` and ``layer`` (defined with the other run logs' names).
STATS = COMPETITION_STATS


def probe_batch(items: Iterable[dict[str, Any]], size: int) -> dict[str, Any] | None:
    """The first ``size`` items valid for both tasks (a mask and a known level), collated; None if there is none."""
    from rlar.data.dataset import collate

    seg, cls = (TASKS[key] for key in TASK_GROUPS[:2])
    chosen = []
    for item in items:
        single = collate([item])
        if bool(torch.as_tensor(seg.valid(single)).all()) and bool(torch.as_tensor(cls.valid(single)).all()):
            chosen.append(item)
        if len(chosen) == size:
            break
    return collate(chosen) if chosen else None


def _norm(g: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm without underflow: max-abs times the norm of the unit-scaled gradient (float64)."""
    unit, _ = unit_scaled(g)
    scale = g.detach().flatten(1).abs().amax(1).to(torch.float64)
    norm: torch.Tensor = scale * unit.to(torch.float64).norm(dim=1)
    return norm


def layer_stats(g_seg: torch.Tensor, g_cls: torch.Tensor) -> dict[str, float]:
    """The :data:`STATS` of one layer from the per-sample task gradients (B, C, H, W) at it."""
    cos, both = per_sample_cosine(g_seg, g_cls)
    chan_cos, chan_both = per_sample_cosine(g_seg.mean(dim=(2, 3)) if g_seg.ndim == 4 else g_seg,
                                            g_cls.mean(dim=(2, 3)) if g_cls.ndim == 4 else g_cls)
    c = cos[both].detach().double().numpy()
    cc = chan_cos[chan_both].detach().double().numpy()
    ratio = (_norm(g_seg) / _norm(g_cls))[both].numpy()
    if c.size == 0:
        return {"n": 0.0, **dict.fromkeys(STATS[1:], math.nan)}
    q10, q50, q90 = np.quantile(c, [0.1, 0.5, 0.9])
    return {"n": float(c.size), "cos_mean": float(c.mean()), "cos_q10": float(q10), "cos_q50": float(q50),
            "cos_q90": float(q90), "abs_cos_mean": float(np.abs(c).mean()),
            "chan_cos_mean": float(cc.mean()) if cc.size else math.nan,
            "chan_abs_cos_mean": float(np.abs(cc).mean()) if cc.size else math.nan,
            "log10_norm_ratio": float(np.median(np.log10(ratio)))}


class CompetitionProbe:
    """Measures :data:`STATS` per encoder layer on one fixed batch (module docstring) and appends them to a CSV.

    Args:
        batch: the probe batch (:func:`probe_batch`), on the training device.
        loss_fn: the run's loss (``loss_fn(out, batch) -> {"seg": .., "cls": .., ...}``).
        out_dir: the run folder (``competition.csv`` goes there); None keeps the rows in memory only.
    """

    def __init__(self, batch: Mapping[str, Any], loss_fn: Callable[..., dict[str, torch.Tensor]],
                 out_dir: str | Path | None = None) -> None:
        self.batch = dict(batch)
        self.loss_fn = loss_fn
        self.path = None if out_dir is None else Path(out_dir) / COMPETITION_FILE
        self.rows: list[dict[str, Any]] = []

    def measure(self, model: nn.Module) -> list[dict[str, Any]]:
        """One row per encoder layer (fine to coarse) for the model as it is now; restores its train/eval mode."""
        seg_key, cls_key = TASK_GROUPS[:2]
        was_training = model.training
        model.eval()
        try:
            with torch.enable_grad():
                out = model(self.batch["image"])
                losses = self.loss_fn(out, self.batch)
                if seg_key not in losses or cls_key not in losses:
                    return []
                names = list(out.features)
                maps = [out.features[n] for n in names]
                g_seg = torch.autograd.grad(losses[seg_key], maps, retain_graph=True, allow_unused=True)
                g_cls = torch.autograd.grad(losses[cls_key], maps, allow_unused=True)
        finally:
            model.train(was_training)
        rows = []
        for name, gs, gc in zip(names, g_seg, g_cls, strict=True):
            if gs is None or gc is None:  # a layer only one task reaches (e.g. no skip connection from it)
                continue
            rows.append({"layer": name, **layer_stats(gs.float(), gc.float())})
        return rows

    def record(self, model: nn.Module, epoch: int) -> list[dict[str, Any]]:
        """:meth:`measure`, tagged with ``epoch`` (0 = before training), kept and written to ``competition.csv``."""
        rows = [{"epoch": int(epoch), **row} for row in self.measure(model)]
        self.rows = [r for r in self.rows if r["epoch"] != epoch] + rows
        if self.path is not None and self.rows:
            frame = pd.DataFrame(self.rows, columns=["epoch", "layer", *STATS])
            tmp = self.path.with_suffix(".csv.tmp")
            frame.to_csv(tmp, index=False)
            tmp.replace(self.path)
        return rows

    def load(self) -> None:
        """Keep the rows a resumed run wrote before (so the file stays complete after ``--resume``)."""
        if self.path is not None and self.path.is_file():
            self.rows = pd.read_csv(self.path).to_dict("records")


__all__ = ["COMPETITION_FILE", "STATS", "CompetitionProbe", "layer_stats", "probe_batch"]
