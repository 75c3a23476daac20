"""``nashmtl``: Multi-Task Learning as a Bargaining Game (Navon et al., ICML 2022), torchjd's ``NashMTL``."""

from __future__ import annotations

from collections.abc import Mapping

from torchjd.aggregation import Aggregator
from torchjd.aggregation import NashMTL as _NashMTL

from rlar.errors import ConfigError

from ._jacobian import JacobianStrategy


class NashMTL(JacobianStrategy):
    """Weights alpha solving the Nash bargaining condition G^T G alpha = 1/alpha (cvxpy/ECOS); the update
    is alpha @ J, its norm clipped to ``max_norm``. Stateful (warm-started from the previous alpha): one
    instance per training run; the aggregator is rebuilt when the number of tasks changes."""

    name = "nashmtl"

    def __init__(self, tasks: Mapping[str, list[str]] | None = None, representation: str = "bottleneck",
                 max_norm: float = 1.0, update_weights_every: int = 1, optim_niter: int = 20,
                 parallel_chunk_size: int | None = None) -> None:
        super().__init__(tasks, representation, parallel_chunk_size)
        if max_norm < 0:
            raise ConfigError("max_norm", f"must be >= 0, got {max_norm}")
        if update_weights_every < 1:
            raise ConfigError("update_weights_every", f"must be >= 1, got {update_weights_every}")
        if optim_niter < 1:
            raise ConfigError("optim_niter", f"must be >= 1, got {optim_niter}")
        self.max_norm, self.update_weights_every, self.optim_niter = float(max_norm), update_weights_every, optim_niter

    def make_aggregator(self, n_tasks: int) -> Aggregator:
        return _NashMTL(n_tasks=n_tasks, max_norm=self.max_norm, update_weights_every=self.update_weights_every,
                        optim_niter=self.optim_niter)
