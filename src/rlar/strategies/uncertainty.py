"""``uncertainty``: homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ._cut import CutPass, cut_backward, floats, pair_cosine
from .base import LossFn, StepReport, Strategy


class UncertaintyWeighting(Strategy):
    r"""total = sum_t exp(-s_t) L_t + s_t with one learnable log-variance s_t = log sigma_t^2 per task.

    Kendall et al. write 1/(2 sigma^2) L + log sigma for regression and 1/sigma^2 L + log sigma for
    classification. We drop the 0.5 factors for every task (as LibMTL and most re-implementations do):
    for regression this is exactly twice Kendall's objective (same minimiser in (theta, s), the factor
    is absorbed by the learning rate), and it treats the Dice+BCE segmentation and CE classification
    losses alike instead of guessing which "likelihood" each corresponds to. s_t starts at 0 (weight 1).
    The trainer must add ``strategy.parameters()`` to the optimiser.
    """

    name = "uncertainty"

    def __init__(self, tasks: Mapping[str, list[str]] | None = None, representation: str = "bottleneck",
                 init: float = 0.0) -> None:
        super().__init__(tasks, representation)
        self.log_vars = nn.ParameterDict({t: nn.Parameter(torch.tensor(float(init))) for t in self.tasks})

    def step(self, model: nn.Module, batch: Mapping[str, Any], loss_fn: LossFn, step: int) -> StepReport:
        cp = CutPass(model, batch, loss_fn, self.tasks, [self.representation])
        objectives: dict[str, torch.Tensor] = {}
        used: list[torch.Tensor] = []
        for task, loss in cp.task_losses.items():
            if task not in self.log_vars:  # a loss key outside every task: plain weight 1
                objectives[task] = loss
                continue
            s = self.log_vars[task]  # moved with the strategy: the trainer calls strategy.to(device)
            objectives[task] = torch.exp(-s) * loss + s
            used.append(s)
        grads = cut_backward(cp, objectives, extra_params=used)
        total = sum(float(o.detach()) for o in objectives.values())
        extra = {f"weight_{t}": float(torch.exp(-s.detach())) for t, s in self.log_vars.items()}
        return StepReport(floats(cp.losses), total, pair_cosine(grads, list(cp.task_losses), self.representation),
                          extra)
