"""Shared step of the gradient-surgery methods (PCGrad, CAGrad, Nash-MTL), built on torchjd 0.18.

Per step, through the cut of the model (see ``_cut.py``):

1. ``torchjd.autojac.mtl_backward(task_losses, features=leaves)``: the heads' backward per task; head
   parameters get the sum of their tasks' gradients in ``.grad``, the cut leaves get the Jacobian
   (one row per task) in ``.jac``;
2. ``torchjd.autojac.backward(trunk_tensors, jac_tensors=leaf Jacobians)``: the trunk's backward of
   every row at once (vmap), giving each trunk parameter its Jacobian in ``.jac``;
3. ``torchjd.autojac.jac_to_grad(trunk_params, aggregator)``: the aggregator (PCGrad, CAGrad,
   NashMTL from ``torchjd.aggregation``) turns the full trunk Jacobian into the update in ``.grad``.

This is exactly torchjd's MTL recipe with the shared feature extractor being the trunk below the cut:
the "features" are the cut's trunk tensors (z and the skips that cross the cut). The aggregation is
only correct when no head-side parameter serves two tasks, i.e. when the cut is the last shared layer;
otherwise the step raises (choose ``representation='bottleneck'``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torchjd.aggregation import Aggregator
from torchjd.autojac import backward as jd_backward
from torchjd.autojac import jac_to_grad, mtl_backward

from rlar.errors import ConfigError

from ._cut import CutPass, cut_backward, floats, mean_cosine, params_reached, per_sample_cosine
from .base import LossFn, StepReport, Strategy


class JacobianStrategy(Strategy):
    """Base of the torchjd-aggregated strategies; subclasses build the aggregator for ``n_tasks`` tasks.

    parallel_chunk_size: passed to torchjd (None = all Jacobian rows in one vmapped backward; 1 avoids
    vmap, for modules that do not support it).
    """

    def __init__(self, tasks: Mapping[str, list[str]] | None = None, representation: str = "bottleneck",
                 parallel_chunk_size: int | None = None) -> None:
        super().__init__(tasks, representation)
        self.parallel_chunk_size = parallel_chunk_size
        self._aggregator: Aggregator | None = None
        self._n_tasks = 0

    def make_aggregator(self, n_tasks: int) -> Aggregator:
        raise NotImplementedError

    def aggregator(self, n_tasks: int) -> Aggregator:
        """The aggregator for this many tasks, kept across steps (Nash-MTL is stateful)."""
        if self._aggregator is None or self._n_tasks != n_tasks:
            self._aggregator, self._n_tasks = self.make_aggregator(n_tasks), n_tasks
        return self._aggregator

    def step(self, model: nn.Module, batch: Mapping[str, Any], loss_fn: LossFn, step: int) -> StepReport:
        cp = CutPass(model, batch, loss_fn, self.tasks, [self.representation])
        task_names = list(cp.task_losses)
        losses = [cp.task_losses[t] for t in task_names]
        total = sum(float(v.detach()) for v in cp.losses.values())
        if len(losses) < 2:  # one task: nothing to aggregate, plain gradient descent
            cut_backward(cp, cp.task_losses)
            return StepReport(floats(cp.losses), total, None)

        head_ids = {id(p) for p in cp.head_params}
        per_task = [[p for p in params_reached([loss]) if id(p) in head_ids] for loss in losses]
        self._check_disjoint(per_task, task_names, cp.cut_at)
        leaves = [leaf for leaf, t in zip(cp.leaves, cp.trunk, strict=True) if t.requires_grad]
        trunk = [t for t in cp.trunk if t.requires_grad]
        mtl_backward(losses, features=cp.leaves, tasks_params=per_task, shared_params=cp.leaves,
                     parallel_chunk_size=self.parallel_chunk_size)
        z = cp.layer_tensors[self.representation]
        jac_z = z.jac  # (n_tasks, B, ...)
        cosine = mean_cosine(*per_sample_cosine(jac_z[0], jac_z[1]))
        extra: dict[str, float] = {}
        if trunk:
            trunk_params = params_reached(trunk)
            jd_backward(trunk, jac_tensors=[leaf.jac for leaf in leaves], inputs=trunk_params,
                        parallel_chunk_size=self.parallel_chunk_size)
            weights = jac_to_grad(trunk_params, self.aggregator(len(losses)))
            if weights is not None:
                extra = {f"weight_{t}": float(w) for t, w in zip(task_names, weights.detach(), strict=True)}
        for leaf in cp.leaves:  # the leaves are throw-away copies, but do not leave .jac lying around
            if hasattr(leaf, "jac"):
                del leaf.jac
        return StepReport(floats(cp.losses), total, cosine, extra)

    @staticmethod
    def _check_disjoint(per_task: list[list[torch.Tensor]], names: list[str], cut_at: str) -> None:
        seen: dict[int, str] = {}
        for name, params in zip(names, per_task, strict=True):
            for p in params:
                if id(p) in seen:
                    raise ConfigError("representation", f"cut at '{cut_at}' leaves a parameter of shape "
                                      f"{tuple(p.shape)} on the head side shared by tasks '{seen[id(p)]}' and "
                                      f"'{name}'; the aggregation would miss it: use the last shared layer "
                                      "(e.g. 'bottleneck')")
                seen[id(p)] = name
