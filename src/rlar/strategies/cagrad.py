"""``cagrad``: Conflict-Averse Gradient descent (Liu et al., NeurIPS 2021), torchjd's weighting + the official rescale.

The official code (github.com/Cranial-XIX/CAGrad, ``cagrad(grads, alpha, rescale=1)``) returns
g = g0 + (c ||g0|| / ||g_w||) g_w with g0 the MEAN task gradient, then divides it by 1 + c^2 (``rescale=1``, its
default), by 1 + c (``rescale=2``) or leaves it (``rescale=0``). torchjd's ``CAGradWeighting`` gives the weights of
that g (1/T + (c ||g0|| / ||g_w||) w; tested against a hand-solved two-task case); ``rescale`` scales them here.
Task-specific (head) parameters get their own task's gradient, as in the official code.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat
from torchjd.aggregation import Aggregator, CAGradWeighting, GramianWeightedAggregator, Weighting
from torchjd.linalg import PSDMatrix

from ._jacobian import JacobianOptions, JacobianStrategy


class CAGradOptions(JacobianOptions):
    c: NonNegativeFloat = Field(0.4, description="radius of the ball around g0, relative to ||g0|| (paper: 0.4 for "
                                                 "dense prediction on NYUv2 / Cityscapes)")
    rescale: Literal[0, 1, 2] = Field(1, description="official rescale: 0 none, 1 divide by 1 + c^2 (default), "
                                                     "2 divide by 1 + c")
    norm_eps: PositiveFloat = Field(1e-4, description="torchjd's guard when normalising the Gramian")


def rescale_factor(c: float, rescale: int) -> float:
    """The official CAGrad's final scaling of the update."""
    return {0: 1.0, 1: 1.0 / (1.0 + c * c), 2: 1.0 / (1.0 + c)}[rescale]


class _Scaled(Weighting[PSDMatrix]):
    """A Gramian weighting whose weights are multiplied by a constant."""

    def __init__(self, inner: Weighting[PSDMatrix], factor: float) -> None:
        super().__init__()
        self.inner, self.factor = inner, factor

    def forward(self, stat: PSDMatrix, /) -> torch.Tensor:
        return self.inner(stat) * self.factor


class CAGrad(JacobianStrategy):
    """Update d maximising the worst task improvement within a ball of radius c ||g0|| around the mean gradient g0
    (torchjd solves the dual with cvxpy/Clarabel), then the official ``rescale``."""

    name = "cagrad"
    Options = CAGradOptions
    options: CAGradOptions

    def make_aggregator(self, n_tasks: int) -> Aggregator:
        o = self.options
        return GramianWeightedAggregator(_Scaled(CAGradWeighting(c=o.c, norm_eps=o.norm_eps),
                                                 rescale_factor(o.c, o.rescale)))
