"""``nashmtl``: Multi-Task Learning as a Bargaining Game (Navon et al., ICML 2022), torchjd's ``NashMTL``."""

from __future__ import annotations

import torch
from pydantic import Field, NonNegativeFloat, PositiveInt
from torchjd.aggregation import Aggregator
from torchjd.aggregation import NashMTL as _NashMTL

from ._jacobian import JacobianOptions, JacobianStrategy


class NashMTLOptions(JacobianOptions):
    max_norm: NonNegativeFloat = Field(1.0, description="clip ||alpha @ J_shared|| to this (0: no clipping)")
    update_weights_every: PositiveInt = Field(1, description="solve for alpha every n steps, reuse it in between")
    optim_niter: PositiveInt = Field(20, description="iterations of the sequential convex solver")


class NashMTL(JacobianStrategy):
    """Weights alpha solving the Nash bargaining condition G^T G alpha = 1/alpha (cvxpy/ECOS, torchjd).

    As the official implementation (github.com/AvivNavon/nash-mtl) backpropagates sum_t alpha_t L_t and then clips
    the shared parameters' gradient norm to ``max_norm``: the trunk gets alpha @ J clipped (torchjd's aggregation),
    and every task-specific (head) parameter gets alpha_t times its task's gradient, with the unclipped alpha.
    Stateful (warm-started from the previous alpha): one instance per training run.
    """

    name = "nashmtl"
    Options = NashMTLOptions
    options: NashMTLOptions

    def make_aggregator(self, n_tasks: int) -> Aggregator:
        o = self.options
        return _NashMTL(n_tasks=n_tasks, max_norm=o.max_norm, update_weights_every=o.update_weights_every,
                        optim_niter=o.optim_niter)

    def head_weights(self, weights: torch.Tensor | None) -> list[float] | None:
        """The unclipped alpha of this step (torchjd keeps it as the warm start of the next solve)."""
        aggregator = self._aggregator
        if weights is None or not isinstance(aggregator, _NashMTL):
            return None
        return [float(a) for a in aggregator.weighting.prvs_alpha]
