"""``sum``: the weighted sum of all loss terms (single-task, vanilla and guided multitask training)."""

from __future__ import annotations

from pydantic import Field, NonNegativeFloat

from ._cut import CutPass, plain_backward
from .base import Contribution, Strategy, StrategyOptions


class WeightedSumOptions(StrategyOptions):
    weights: dict[str, NonNegativeFloat] = Field(
        default_factory=dict,
        description="loss key -> extra weight (default 1); the loss function weights already, this is for ablations")


class WeightedSum(Strategy):
    """total = sum_k w_k L_k over every loss term k the loss function returned (w_k = 1 unless given).

    The backward goes through the cut (see ``_cut.py``): the heads' backward per loss term, the trunk's once on the
    summed gradients, which is exactly ``total.backward()`` (tested), with grad_z L_k per term for free.
    """

    name = "sum"
    Options = WeightedSumOptions
    options: WeightedSumOptions

    def backward(self, cp: CutPass, step: int) -> Contribution:
        weights = {k: self.options.weights.get(k, 1.0) for k in cp.losses}
        plain_backward(cp, weights)
        return Contribution(weights=weights)
