"""``pcgrad``: Projecting Conflicting Gradients (Yu et al., NeurIPS 2020) via ``torchjd.aggregation.PCGrad``."""

from __future__ import annotations

from torchjd.aggregation import Aggregator
from torchjd.aggregation import PCGrad as _PCGrad

from ._jacobian import JacobianStrategy


class PCGrad(JacobianStrategy):
    """Each task gradient is projected onto the normal plane of every task gradient it conflicts with
    (negative inner product), in random order, and the projections are summed (torchjd's PCGrad; with
    two tasks the order does not matter, so the update is deterministic)."""

    name = "pcgrad"

    def make_aggregator(self, n_tasks: int) -> Aggregator:
        return _PCGrad()
