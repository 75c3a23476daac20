"""Shared machinery: per-task gradients at the trunk/head cut, per-sample cosines, one trunk backward.

The model's cut forward (``model(x, cut_at=name)``, see ``rlar/models/output.py``) computes the task
heads from detached copies (``leaves``) of the trunk tensors at the cut (the representation z and the
skip connections that cross it). That lets every strategy

1. differentiate each task loss w.r.t. the leaves and the head parameters with the *heads'* backward
   only (``torch.autograd.grad``), which yields grad_z L_t per sample for free;
2. optionally add a regulariser built from those gradients (second-order autograd through the heads);
3. finish with ONE ``torch.autograd.backward(trunk_tensors, summed_leaf_grads)`` through the trunk.

Nothing is recomputed: the cost over a plain ``loss.backward()`` is only what the regulariser itself
needs (the double backward through the heads).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from rlar.errors import ConfigError

from .base import LossFn

Grad = torch.Tensor | None


def group_losses(losses: Mapping[str, torch.Tensor], tasks: Mapping[str, list[str]]) -> dict[str, torch.Tensor]:
    """Sum the loss terms of each task; absent keys are ignored, unmapped keys become their own task.

    Order: the tasks in ``tasks`` order (those with at least one present key), then unmapped keys.
    """
    for key, value in losses.items():
        if not isinstance(value, torch.Tensor) or value.ndim != 0:
            raise ValueError(f"loss '{key}' must be a scalar tensor, got {type(value).__name__} "
                             f"{tuple(getattr(value, 'shape', ()))}")
    grouped: dict[str, torch.Tensor] = {}
    mapped: set[str] = set()
    for task, keys in tasks.items():
        present = [losses[k] for k in keys if k in losses]
        mapped.update(keys)
        if present:
            grouped[task] = torch.stack(present).sum() if len(present) > 1 else present[0]
    for key, value in losses.items():
        if key not in mapped:
            if key in grouped:
                raise ConfigError("tasks", f"loss key '{key}' collides with a task of the same name")
            grouped[key] = value
    return grouped


def per_sample_cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine between the per-sample gradients ``a`` and ``b`` (shape (B, ...)), differentiably and NaN-free.

    delta = g / (||g|| + eps) per sample (flattened); returns (cos (B,), valid (B,) bool) where ``valid``
    marks samples whose gradients are both non-zero (norm > eps). Invalid samples get cos = 0 with zero
    gradient: the norm is taken of ``where(valid, ||g||^2, 1)`` so its backward never divides by zero
    (a plain ``norm`` has an undefined derivative at 0, which would poison the batch with NaN).
    """
    a = a.flatten(1)
    b = b.flatten(1)
    sa = (a * a).sum(1)
    sb = (b * b).sum(1)
    valid = (sa > eps * eps) & (sb > eps * eps)
    one = torch.ones_like(sa)
    na = torch.sqrt(torch.where(valid, sa, one)) + eps
    nb = torch.sqrt(torch.where(valid, sb, one)) + eps
    cos = ((a / na[:, None]) * (b / nb[:, None])).sum(1)
    return torch.where(valid, cos, torch.zeros_like(cos)), valid


def mean_cosine(cos: torch.Tensor, valid: torch.Tensor) -> float:
    """Batch mean over the valid samples, NaN when there is none (logged as 'undefined', never averaged in)."""
    n = int(valid.sum())
    return float(cos.detach()[valid].sum()) / n if n else float("nan")


def params_reached(tensors: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """Leaf tensors requiring grad (parameters) that ``tensors`` were computed from, by walking autograd's graph.

    Cheap (no arithmetic, a few hundred nodes for a U-Net); used to tell which head parameters two tasks
    share and which trunk parameters the cut's trunk tensors depend on.
    """
    seen_nodes: set[int] = set()
    found: dict[int, torch.Tensor] = {}
    stack = [t.grad_fn for t in tensors if t.grad_fn is not None]
    for t in tensors:
        if t.grad_fn is None and t.requires_grad:
            found[id(t)] = t
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        variable = getattr(node, "variable", None)
        if variable is not None:
            found[id(variable)] = variable
        for nxt, _ in node.next_functions:
            if nxt is not None:
                stack.append(nxt)
    return list(found.values())


def accumulate_grad(param: torch.Tensor, grad: Grad) -> None:
    """``param.grad += grad`` with backward()'s semantics (creates .grad when absent); ``grad`` is detached."""
    if grad is None:
        return
    grad = grad.detach()
    if param.grad is None:
        param.grad = grad.clone()
    else:
        param.grad.add_(grad)


class CutPass:
    """One cut forward of ``model`` on ``batch`` plus its loss terms, grouped by task.

    layers: representation names the strategy needs gradients at; the cut is made at the lowest of them
    (first in ``model.representation_names``), so the higher ones are head-side tensors of the same graph.
    """

    def __init__(self, model: nn.Module, batch: Mapping[str, Any], loss_fn: LossFn,
                 tasks: Mapping[str, list[str]], layers: Sequence[str]) -> None:
        names = list(getattr(model, "representation_names", []))
        for layer in layers:
            if layer not in names:
                raise ConfigError("representation", f"'{layer}' is not a representation of "
                                  f"{type(model).__name__} (available: {names})")
        self.cut_at = min(layers, key=names.index)
        if "image" not in batch:
            raise KeyError("batch has no 'image' entry (expected the collated batch dict of rlar.data)")
        self.out = model(batch["image"], cut_at=self.cut_at)
        if not self.out.cut:
            raise RuntimeError(f"{type(model).__name__} returned no cut for cut_at='{self.cut_at}'; "
                               "the cut contract of rlar/models/output.py is required")
        self.trunk = [t for t, _ in self.out.cut]
        self.leaves = [leaf for _, leaf in self.out.cut]
        self.layer_tensors = {layer: self.out.features[layer] for layer in layers}
        self.head_params = [p for p in model.head_parameters(self.cut_at) if p.requires_grad]
        self.losses = loss_fn(self.out, batch)
        if not self.losses:
            raise ValueError("loss_fn returned no loss term")
        self.task_losses = group_losses(self.losses, tasks)
        # Differentiation targets: the leaves, then any requested layer that is not a leaf (head side).
        self.inputs: list[torch.Tensor] = list(self.leaves)
        self._index: dict[str, int] = {}
        for layer, tensor in self.layer_tensors.items():
            pos = next((i for i, t in enumerate(self.inputs) if t is tensor), None)
            if pos is None:
                self.inputs.append(tensor)
                pos = len(self.inputs) - 1
            self._index[layer] = pos

    @property
    def n_leaves(self) -> int:
        return len(self.leaves)

    def layer_grad(self, grads: Sequence[Grad], layer: str) -> Grad:
        """Pick the gradient at ``layer`` out of a list aligned with :attr:`inputs`."""
        return grads[self._index[layer]]

    def finish(self, leaf_grads: Sequence[Grad], param_grads: Iterable[tuple[torch.Tensor, Grad]]) -> None:
        """Accumulate head-side parameter gradients and run the single trunk backward."""
        for param, grad in param_grads:
            accumulate_grad(param, grad)
        pairs = [(t, g.detach()) for t, g in zip(self.trunk, leaf_grads, strict=True)
                 if g is not None and t.requires_grad]
        if pairs:
            torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs])


def _add(a: Grad, b: Grad) -> Grad:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


Regulariser = Callable[[dict[str, dict[str, torch.Tensor | None]]], torch.Tensor | None]


def cut_backward(cp: CutPass, objectives: Mapping[str, torch.Tensor], *,
                 regulariser: Regulariser | None = None, through_heads: bool = True,
                 extra_params: Sequence[torch.Tensor] = (),
                 graph_tasks: Collection[str] | None = None) -> dict[str, dict[str, Grad]]:
    """Backward of ``sum(objectives.values()) + regulariser(task grads at layers)`` via the cut.

    objectives:    per-task scalars (e.g. the task losses, possibly weighted).
    regulariser:   receives {task: {layer: grad_layer objective_t}} (graph-carrying when given) and
                   returns the scalar to add (already scaled), or None to add nothing.
    through_heads: differentiate the regulariser w.r.t. the head parameters too (exact); when False it
                   only shapes the leaves (hence the trunk), plus any head-side parameter between the cut
                   and a higher requested layer (without those the higher layer's term would be lost).
    extra_params:  other leaves the objectives depend on (e.g. learnable loss weights).
    graph_tasks:   the tasks whose gradients the regulariser differentiates (default: all); the others'
                   are computed without a second-order graph (cheaper) and reach it detached.

    Returns the detached per-task gradients at each requested layer (for logging cosines).
    """
    head = cp.head_params
    targets = cp.inputs + head + list(extra_params)
    if regulariser is not None and through_heads:
        return _combined_backward(cp, objectives, regulariser, targets, graph_tasks)
    grads_per_task: dict[str, list[Grad]] = {}
    for task, objective in objectives.items():
        if not objective.requires_grad:
            grads_per_task[task] = [None] * len(targets)
            continue
        create_graph = regulariser is not None and (graph_tasks is None or task in graph_tasks)
        grads_per_task[task] = list(torch.autograd.grad(
            objective, targets, retain_graph=True, create_graph=create_graph, allow_unused=True))
    total: list[Grad] = [None] * len(targets)
    for grads in grads_per_task.values():
        total = [_add(a, b) for a, b in zip(total, grads, strict=True)]

    at_layers = {task: {layer: cp.layer_grad(g, layer) for layer in cp.layer_tensors}
                 for task, g in grads_per_task.items()}
    if regulariser is not None:
        reg = regulariser(at_layers)
        if reg is not None and reg.requires_grad:
            n_in = len(cp.inputs)
            # through_heads is False here (True took _combined_backward): the leaves, plus the head-side
            # parameters below a higher requested layer.
            higher = [cp.layer_tensors[l] for l in cp.layer_tensors
                      if not any(cp.layer_tensors[l] is leaf for leaf in cp.leaves)]
            between = {id(p) for p in params_reached(higher)} if higher else set()
            chosen = [i for i, p in enumerate(head) if id(p) in between]
            reg_targets = list(cp.leaves) + [head[i] for i in chosen]
            slots = list(range(cp.n_leaves)) + [n_in + i for i in chosen]
            reg_grads = torch.autograd.grad(reg, reg_targets, allow_unused=True)
            for slot, g in zip(slots, reg_grads, strict=True):
                total[slot] = _add(total[slot], g)

    n_in = len(cp.inputs)
    cp.finish(total[:cp.n_leaves], zip(head + list(extra_params), total[n_in:], strict=True))
    return {task: {layer: (g.detach() if g is not None else None) for layer, g in layers.items()}
            for task, layers in at_layers.items()}


def _combined_backward(cp: CutPass, objectives: Mapping[str, torch.Tensor], regulariser: Regulariser,
                       targets: list[torch.Tensor], graph_tasks: Collection[str] | None) -> dict[str, dict[str, Grad]]:
    """Exact gradient of sum(objectives) + regulariser w.r.t. everything above the cut, in one head backward.

    The task gradients the regulariser needs are taken at the layers only (input gradients: autograd skips the
    head weight gradients, whose second-order graph would be dead weight), then ONE autograd.grad of
    objectives + regulariser gives the leaves and head parameters their exact gradients. Measured faster than
    taking graph-carrying gradients w.r.t. the head parameters per task (docs/strategies.md).
    """
    layers = list(cp.layer_tensors)
    layer_tensors = [cp.layer_tensors[l] for l in layers]
    at_layers: dict[str, dict[str, Grad]] = {}
    for task, objective in objectives.items():
        if not objective.requires_grad:
            at_layers[task] = dict.fromkeys(layers)
            continue
        graph = graph_tasks is None or task in graph_tasks
        g = torch.autograd.grad(objective, layer_tensors, retain_graph=True, create_graph=graph, allow_unused=True)
        at_layers[task] = dict(zip(layers, g, strict=True))
    combined = torch.stack([o for o in objectives.values()]).sum()
    reg = regulariser(at_layers)
    if reg is not None:
        combined = combined + reg
    total: list[Grad] = list(torch.autograd.grad(combined, targets, allow_unused=True)) if combined.requires_grad \
        else [None] * len(targets)
    n_in = len(cp.inputs)
    cp.finish(total[:cp.n_leaves], zip(targets[n_in:], total[n_in:], strict=True))
    return {task: {layer: (g.detach() if g is not None else None) for layer, g in grads.items()}
            for task, grads in at_layers.items()}


def pair_cosine(grads: Mapping[str, Mapping[str, Grad]], tasks: Sequence[str], layer: str,
                eps: float = 1e-12) -> float | None:
    """Logged cosine between the first two tasks at ``layer`` (None with fewer than two tasks)."""
    if len(tasks) < 2:
        return None
    a, b = grads[tasks[0]][layer], grads[tasks[1]][layer]
    if a is None or b is None:
        return float("nan")
    return mean_cosine(*per_sample_cosine(a, b, eps))


def floats(losses: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Detach a loss dict to plain floats for the report."""
    return {k: float(v.detach()) for k, v in losses.items()}
