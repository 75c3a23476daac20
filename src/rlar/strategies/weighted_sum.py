"""``sum``: the weighted sum of all loss terms (single-task, vanilla and guided multitask training)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from rlar.errors import ConfigError

from ._cut import CutPass, cut_backward, floats, pair_cosine
from .base import LossFn, StepReport, Strategy


class WeightedSum(Strategy):
    """total = sum_k w_k L_k over every loss term k the loss function returned (w_k = 1 unless given).

    The backward goes through the cut (see ``_cut.py``) so that grad_z L_t per task, and hence the
    logged cosine, comes at no extra cost: the heads' backward is split per task, the trunk's is run once
    on the summed gradients, which is exactly ``total.backward()``.

    weights: optional loss key -> weight (the loss function usually weights already; this is for
    ablations without touching it).
    """

    name = "sum"

    def __init__(self, tasks: Mapping[str, list[str]] | None = None, representation: str = "bottleneck",
                 weights: Mapping[str, float] | None = None) -> None:
        super().__init__(tasks, representation)
        self.weights = dict(weights or {})
        for key, w in self.weights.items():
            if not isinstance(w, (int, float)) or w < 0:
                raise ConfigError(f"weights.{key}", f"must be a non-negative number, got {w!r}")

    def step(self, model: nn.Module, batch: Mapping[str, Any], loss_fn: LossFn, step: int) -> StepReport:
        cp = CutPass(model, batch, loss_fn, self.tasks, [self.representation])
        weighted = {k: v * self.weights.get(k, 1.0) for k, v in cp.losses.items()}
        objectives = {task: sum(weighted[k] for k in self._keys(task, cp)) for task in cp.task_losses}
        grads = cut_backward(cp, objectives)
        total = sum(float(v.detach()) for v in weighted.values())
        return StepReport(floats(cp.losses), total, pair_cosine(grads, list(cp.task_losses), self.representation))

    def _keys(self, task: str, cp: CutPass) -> list[str]:
        keys = self.tasks.get(task, [task])
        return [k for k in keys if k in cp.losses]
