"""Shared step of the gradient-surgery methods (PCGrad, CAGrad, Nash-MTL), built on torchjd's aggregators.

Per step, through the cut of the model (see ``_cut.py``):

1. each task group's gradient w.r.t. the cut leaves and the head parameters (the heads' backward per loss term,
   as for every method);
2. ``torchjd.autojac.backward(trunk_tensors, jac_tensors=leaf Jacobians)``: the trunk's backward of every task
   row at once (vmap), giving each trunk parameter its Jacobian in ``.jac``;
3. ``torchjd.autojac.jac_to_grad(trunk_params, aggregator)``: the aggregator turns the trunk Jacobian into the
   update in ``.grad`` and returns the task weights it used (weighted aggregators);
4. the head parameters get their task's gradient times :meth:`JacobianStrategy.head_weights` (1 for PCGrad and
   CAGrad, whose official code leaves task-specific parameters alone; Nash-MTL's alpha, since its official code
   backpropagates sum_t alpha_t L_t).

The shared parameters are the trunk below the cut, so the cut must be the last shared layer: a head-side parameter
reached by two task groups makes the step raise (choose ``representation='bottleneck'``).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, PositiveInt
from torchjd.aggregation import Aggregator
from torchjd.autojac import backward as jd_backward
from torchjd.autojac import jac_to_grad

from rlar.errors import ConfigError

from ._cut import CutPass, Grad, accumulate_grad, add_grads
from .base import Contribution, Strategy, StrategyOptions


class JacobianOptions(StrategyOptions):
    parallel_chunk_size: PositiveInt | Literal["auto"] | None = Field(
        "auto", description="torchjd's chunk of Jacobian rows per vmapped backward (None: all; 1: no vmap; 'auto': "
                            "1 on a CPU, all elsewhere)")

    def chunk_size_on(self, device: torch.device) -> int | None:
        """The chunk for trunk parameters on ``device``. 'auto' backpropagates the task rows one at a time on a CPU,
        where vmapping them was measured slower (``benchmarks/strategy_step_time.py``, pcgrad vs pcgrad-rowwise),
        and all at once on an accelerator. The Jacobian is the same either way."""
        if self.parallel_chunk_size == "auto":
            return 1 if device.type == "cpu" else None
        return self.parallel_chunk_size


class JacobianStrategy(Strategy):
    """Base of the torchjd-aggregated strategies; a subclass builds the aggregator for ``n_tasks`` tasks."""

    Options: ClassVar[type[StrategyOptions]] = JacobianOptions
    options: JacobianOptions

    def __init__(self, tasks: Mapping[str, list[str]] | None = None, representation: str = "bottleneck",
                 **options: Any) -> None:
        super().__init__(tasks, representation, **options)
        self._aggregator: Aggregator | None = None
        self._n_tasks = 0

    @abstractmethod
    def make_aggregator(self, n_tasks: int) -> Aggregator:
        """The torchjd aggregator of the method for ``n_tasks`` task rows."""

    def head_weights(self, weights: torch.Tensor | None) -> list[float] | None:
        """Weights of the task gradients on the task-specific (head) parameters; None = 1 for every task."""
        return None

    def aggregator(self, n_tasks: int) -> Aggregator:
        """The aggregator for this many tasks, kept across steps (Nash-MTL is stateful)."""
        if self._aggregator is None or self._n_tasks != n_tasks:
            self._aggregator, self._n_tasks = self.make_aggregator(n_tasks), n_tasks
        return self._aggregator

    def backward(self, cp: CutPass, step: int) -> Contribution:
        per_task = cp.weighted_grads()
        names = list(per_task)
        n_in = len(cp.inputs)
        if len(names) < 2:  # one task: nothing to aggregate, plain gradient descent
            cp.finish_sum(per_task[names[0]])
            return Contribution()
        self._check_disjoint(cp, [per_task[t][n_in:] for t in names], names)
        pairs = [(i, t) for i, t in enumerate(cp.trunk) if t.requires_grad]
        weights: torch.Tensor | None = None
        if pairs and cp.trunk_params:
            rows = [torch.stack([_dense(per_task[t][i], cp.leaves[i]) for t in names]) for i, _ in pairs]
            jd_backward([t for _, t in pairs], jac_tensors=[r.to(t.dtype) for r, (_, t) in zip(rows, pairs, strict=True)],
                        inputs=cp.trunk_params, parallel_chunk_size=self.options.chunk_size_on(cp.trunk_params[0].device))
            weights = jac_to_grad(cp.trunk_params, self.aggregator(len(names)))
        head_w = self.head_weights(weights) or [1.0] * len(names)
        head: list[Grad] = [None] * (len(cp.targets) - n_in)
        for t, w in zip(names, head_w, strict=True):
            head = add_grads(head, per_task[t][n_in:], w)
        for param, grad in zip(cp.head_params, head, strict=True):
            accumulate_grad(param, grad)
        extra = {} if weights is None else \
            {f"weight_{t}": float(w) for t, w in zip(names, weights.detach(), strict=True)}
        return Contribution(extra=extra)

    @staticmethod
    def _check_disjoint(cp: CutPass, head_grads: list[list[Grad]], names: list[str]) -> None:
        for j, param in enumerate(cp.head_params):
            users = [n for n, grads in zip(names, head_grads, strict=True) if grads[j] is not None]
            if len(users) > 1:
                raise ConfigError("strategy.representation",
                                  f"cut at '{cp.cut_at}' leaves a parameter of shape {tuple(param.shape)} on the "
                                  f"head side shared by tasks {users}; the aggregation would miss it: use the last "
                                  "shared layer (e.g. 'bottleneck')")


def _dense(grad: Grad, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if grad is None else grad
