"""``cagrad``: Conflict-Averse Gradient descent (Liu et al., NeurIPS 2021) via ``torchjd.aggregation.CAGrad``."""

from __future__ import annotations

from collections.abc import Mapping

from torchjd.aggregation import Aggregator
from torchjd.aggregation import CAGrad as _CAGrad

from rlar.errors import ConfigError

from ._jacobian import JacobianStrategy


class CAGrad(JacobianStrategy):
    """Update d maximising the worst task improvement within a ball of radius c*||g0|| around the mean
    gradient g0 (torchjd solves the dual with cvxpy/Clarabel). c = 0.4 is the value the CAGrad paper
    uses for its dense-prediction benchmarks (NYUv2, Cityscapes)."""

    name = "cagrad"

    def __init__(self, tasks: Mapping[str, list[str]] | None = None, representation: str = "bottleneck",
                 c: float = 0.4, norm_eps: float = 1e-4, parallel_chunk_size: int | None = None) -> None:
        super().__init__(tasks, representation, parallel_chunk_size)
        if c < 0:
            raise ConfigError("c", f"must be >= 0, got {c}")
        self.c, self.norm_eps = float(c), float(norm_eps)

    def make_aggregator(self, n_tasks: int) -> Aggregator:
        return _CAGrad(c=self.c, norm_eps=self.norm_eps)
