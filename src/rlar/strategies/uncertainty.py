"""``uncertainty``: homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from pydantic import Field
from torch import nn

from ._cut import CutPass, plain_backward
from .base import Contribution, Strategy, StrategyOptions


class UncertaintyOptions(StrategyOptions):
    init: float = Field(0.0, description="initial log-variance s_t of every task (weight exp(-s_t) = 1 at 0)")


class UncertaintyWeighting(Strategy):
    r"""total = sum_t exp(-s_t) L_t + s_t with one learnable log-variance s_t = log sigma_t^2 per task group.

    Kendall et al. write 1/(2 sigma^2) L + log sigma for regression and 1/sigma^2 L + log sigma for
    classification. We drop the 0.5 factors for every task (as LibMTL and most re-implementations do):
    for regression this is exactly twice Kendall's objective (same minimiser in (theta, s), the factor
    is absorbed by the learning rate), and it treats the Dice+BCE segmentation and CE classification
    losses alike instead of guessing which "likelihood" each corresponds to. s_t starts at ``init``.
    d total / d s_t = 1 - exp(-s_t) L_t is written to ``s_t.grad`` directly (no autograd needed).
    The trainer must add ``strategy.parameters()`` to the optimiser.
    """

    name = "uncertainty"
    Options = UncertaintyOptions
    options: UncertaintyOptions

    def __init__(self, tasks: Mapping[str, list[str]] | None = None, representation: str = "bottleneck",
                 **options: Any) -> None:
        super().__init__(tasks, representation, **options)
        self.log_vars = nn.ParameterDict({t: nn.Parameter(torch.tensor(float(self.options.init)))
                                          for t in self.tasks})

    def backward(self, cp: CutPass, step: int) -> Contribution:
        weights: dict[str, float] = {}
        s_grads: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        regulariser = 0.0
        for task, keys in cp.groups.items():
            if task not in self.log_vars:  # a loss key outside every task group: plain weight 1
                continue
            s = self.log_vars[task]
            w = math.exp(-float(s.detach()))
            loss = sum(float(cp.losses[k].detach()) for k in keys)
            weights.update(dict.fromkeys(keys, w))
            regulariser += float(s.detach())
            s_grads.append((s, torch.ones_like(s) - w * loss))
        plain_backward(cp, weights, extra=s_grads)
        extra = {f"weight_{t}": math.exp(-float(s.detach())) for t, s in self.log_vars.items()}
        return Contribution(weights=weights, regulariser=regulariser, extra=extra)
