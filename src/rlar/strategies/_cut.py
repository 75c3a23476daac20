"""Shared machinery: per-loss gradients at the trunk/head cut, per-sample cosines, one trunk backward.

The model's cut forward (``model(x, cut_at=name)``, see ``rlar/models/output.py``) computes the task heads from
detached copies (``leaves``) of the trunk tensors at the cut (the representation z and the skip connections that
cross it). That lets every strategy

1. differentiate each loss term w.r.t. the leaves and the head parameters with the *heads'* backward only
   (``torch.autograd.grad``), which yields grad_z L_k per sample for free;
2. optionally add a regulariser built from those gradients (second-order autograd through the heads);
3. finish with ONE backward through the trunk of the summed leaf gradients (two when a regulariser is applied:
   its part is kept separate, so that its share of the gradient can be measured and so that, under bf16 autocast,
   a small regulariser gradient is not rounded away when added to the large loss gradient in bf16).

Every head-side ``autograd.grad`` retains the head graph (it is freed with the CutPass), so the comparable cosine
of the step report (docs/interfaces.md) can always be completed after a method's hook ran: the gradients at z of the loss keys "seg" and
"cls" are cached whenever a method computes them and computed (cheaply, first order) only if it did not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rlar.errors import ConfigError
from rlar.tasks import TASK_GROUPS, TASKS

Grad = torch.Tensor | None
LossFn = Callable[[Any, Mapping[str, Any]], dict[str, torch.Tensor]]


def group_losses(losses: Mapping[str, torch.Tensor], tasks: Mapping[str, list[str]]) -> dict[str, torch.Tensor]:
    """Sum the loss terms of each task group; absent keys are ignored, unmapped keys become their own group.

    Order: the groups in ``tasks`` order (those with at least one present key), then unmapped keys.
    """
    return {task: torch.stack([losses[k] for k in keys]).sum() if len(keys) > 1 else losses[keys[0]]
            for task, keys in present_groups(losses, tasks).items()}


def present_groups(losses: Mapping[str, torch.Tensor], tasks: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """Task group -> the loss keys of it present in ``losses`` (groups with none are dropped; see group_losses)."""
    for key, value in losses.items():
        if not isinstance(value, torch.Tensor) or value.ndim != 0:
            raise ValueError(f"loss '{key}' must be a scalar tensor, got {type(value).__name__} "
                             f"{tuple(getattr(value, 'shape', ()))}")
    groups: dict[str, list[str]] = {}
    mapped: set[str] = set()
    for task, keys in tasks.items():
        mapped.update(keys)
        present = [k for k in keys if k in losses]
        if present:
            groups[task] = present
    for key in losses:
        if key not in mapped:
            if key in groups:
                raise ConfigError("strategy.tasks", f"loss key '{key}' collides with a task of the same name")
            groups[key] = [key]
    return groups


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32, or kept in float64: the precision the penalties are computed in whatever autocast says."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def unit_scaled(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample gradients (B, ...) -> (B, D) float32 divided by each sample's own largest |value|, and (B,) nonzero.

    Why: the tasks' gradients at a representation differ by up to 1e8 in scale (||grad_z L_seg|| ~ 1e-10 at
    initialisation on DDTI), so squares of the raw values underflow float32 and any absolute epsilon is a large
    fraction of one task's norm. Dividing by the detached max-abs makes every later threshold relative to the
    gradient's own scale; for scale-invariant functions (a cosine, a normalised saliency) value and gradient are
    exactly those of the unscaled input, because d f(g / s) / dg = (1 / s) f'(g / s) = f'(g) for 0-homogeneous f.
    ``nonzero`` is False only for an exactly zero (or non-finite) gradient.
    """
    flat = at_least_float32(g.flatten(1))
    scale = flat.detach().abs().amax(dim=1)
    nonzero = torch.isfinite(scale) & (scale > 0)
    safe = torch.where(nonzero, scale, torch.ones_like(scale))
    return flat / safe[:, None], nonzero


def per_sample_cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine between the per-sample gradients ``a`` and ``b`` (shape (B, ...)), in float32, differentiably, NaN-free.

    Scale-free: each sample's gradient is first divided by its own largest |value| (:func:`unit_scaled`), so the
    cosine and its derivative are the same for a gradient of 1e-12 as for one of 1, and ``eps`` (the guard of
    delta = g / (||g|| + eps)) is relative to that scale. Returns (cos (B,), nonzero (B,) bool), ``nonzero``
    marking samples whose two gradients are both non-zero; other samples get cos = 0 with zero gradient (the norm
    is taken of ``where(nonzero, ||g||^2, 1)`` so its backward never divides by zero). Which samples *count* is
    decided by their labels (see :func:`label_valid`); ``nonzero`` only keeps the arithmetic safe.
    """
    a, nonzero_a = unit_scaled(a)
    b, nonzero_b = unit_scaled(b)
    nonzero = nonzero_a & nonzero_b
    one = torch.ones_like(nonzero, dtype=a.dtype)
    na = torch.sqrt(torch.where(nonzero, (a * a).sum(1), one)) + eps
    nb = torch.sqrt(torch.where(nonzero, (b * b).sum(1), one)) + eps
    cos = ((a / na[:, None]) * (b / nb[:, None])).sum(1)
    return torch.where(nonzero, cos, torch.zeros_like(cos)), nonzero


def mean_cosine(cos: torch.Tensor, valid: torch.Tensor) -> float:
    """Batch mean over the valid samples, NaN when there is none (logged as 'undefined', never averaged in)."""
    n = int(valid.sum())
    return float(cos.detach()[valid].sum()) / n if n else math.nan


def label_valid(batch: Mapping[str, Any], keys: Iterable[str], n: int, device: torch.device) -> torch.Tensor:
    """(B,) bool: samples valid for ANY of the loss ``keys`` by their labels (``rlar.tasks.TASKS[k].valid``).

    A key outside the task table, or a batch without the keys its rule reads (toy batches in tests), counts every
    sample as valid.
    """
    out = torch.zeros(n, dtype=torch.bool, device=device)
    for key in keys:
        spec = TASKS.get(key)
        try:
            rule = None if spec is None else spec.valid(batch)
        except KeyError:
            rule = None
        if rule is None:
            return torch.ones(n, dtype=torch.bool, device=device)
        out |= torch.as_tensor(rule, device=device).bool().reshape(n)
    return out


def params_reached(tensors: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """Leaf tensors requiring grad (parameters) that ``tensors`` were computed from, by walking autograd's graph."""
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
    grad = grad.detach().to(param.dtype)
    if param.grad is None:
        param.grad = grad.clone()
    else:
        param.grad.add_(grad)


def add_grads(a: Sequence[Grad], b: Sequence[Grad], scale: float = 1.0) -> list[Grad]:
    """Element-wise a + scale * b over aligned gradient lists (None = zero)."""
    out: list[Grad] = []
    for x, y in zip(a, b, strict=True):
        if y is None:
            out.append(x)
        else:
            y = y if scale == 1.0 else y * scale
            out.append(y if x is None else x + y)
    return out


class CutPass:
    """One cut forward of ``model`` on ``batch`` plus its loss terms, and gradients of them taken at the cut.

    layers: representation names the strategy needs gradients at; the cut is made at the lowest of them (first in
    ``model.representation_names``), so the higher ones are head-side tensors of the same graph.
    representation: the z of the comparable cosine (default: the lowest layer).
    """

    def __init__(self, model: nn.Module, batch: Mapping[str, Any], loss_fn: LossFn,
                 tasks: Mapping[str, list[str]], layers: Sequence[str], representation: str | None = None) -> None:
        names = list(getattr(model, "representation_names", []))
        for layer in layers:
            if layer not in names:
                raise ConfigError("strategy.representation", f"'{layer}' is not a representation of "
                                  f"{type(model).__name__} (available: {names})")
        self.cut_at = min(layers, key=names.index)
        self.representation = representation if representation is not None else self.cut_at
        if "image" not in batch:
            raise KeyError("batch has no 'image' entry (expected the collated batch dict of rlar.data)")
        self.batch = batch
        self.out = model(batch["image"], cut_at=self.cut_at)
        if not self.out.cut:
            raise RuntimeError(f"{type(model).__name__} returned no cut for cut_at='{self.cut_at}'; "
                               "the cut contract of rlar/models/output.py is required")
        self.trunk = [t for t, _ in self.out.cut]
        self.leaves = [leaf for _, leaf in self.out.cut]
        self.layer_tensors = {layer: self.out.features[layer] for layer in layers}
        head_parameters: Callable[[str], Iterable[torch.Tensor]] = model.head_parameters  # type: ignore[assignment]
        self.head_params = [p for p in head_parameters(self.cut_at) if p.requires_grad]
        self.losses: dict[str, torch.Tensor] = loss_fn(self.out, batch)
        if not self.losses:
            raise ValueError("loss_fn returned no loss term")
        self.groups = present_groups(self.losses, tasks)
        # Differentiation targets: the leaves, then any requested layer that is not a leaf (head side), then heads.
        self.inputs: list[torch.Tensor] = list(self.leaves)
        self._index: dict[str, int] = {}
        for layer, tensor in self.layer_tensors.items():
            pos = next((i for i, t in enumerate(self.inputs) if t is tensor), None)
            if pos is None:
                self.inputs.append(tensor)
                pos = len(self.inputs) - 1
            self._index[layer] = pos
        self.targets: list[torch.Tensor] = self.inputs + self.head_params
        self._z: dict[str, Grad] = {}
        self._first: dict[str, list[Grad]] = {}
        self._trunk_params: list[torch.Tensor] | None = None

    # -- facts about the pass ------------------------------------------------------------------------------------
    @property
    def n_leaves(self) -> int:
        return len(self.leaves)

    @property
    def batch_size(self) -> int:
        return int(self.leaves[0].shape[0])

    @property
    def task_losses(self) -> dict[str, torch.Tensor]:
        """Task group -> summed loss (groups in order; see :func:`group_losses`)."""
        return group_losses(self.losses, self.groups)

    def group_valid(self, task: str) -> torch.Tensor:
        """(B,) bool: samples valid for the task group by their labels (valid for any of its present keys)."""
        return label_valid(self.batch, self.groups[task], self.batch_size, self.leaves[0].device)

    def layer_grad(self, grads: Sequence[Grad], layer: str) -> Grad:
        """Pick the gradient at ``layer`` out of a list aligned with :attr:`targets` (or :attr:`inputs`)."""
        return grads[self._index[layer]]

    # -- gradients ---------------------------------------------------------------------------------------------
    def key_grads(self, key: str) -> list[Grad]:
        """First-order gradients of loss ``key`` w.r.t. :attr:`targets` (heads' backward only, once per key: cached;
        the graph is kept)."""
        if key not in self._first:
            loss = self.losses[key]
            grads: list[Grad] = list(torch.autograd.grad(loss, self.targets, retain_graph=True, allow_unused=True)) \
                if loss.requires_grad else [None] * len(self.targets)
            self._first[key] = grads
            self._z.setdefault(key, self.layer_grad(grads, self.representation))
        return list(self._first[key])

    def layer_grads(self, key: str, create_graph: bool) -> dict[str, Grad]:
        """Gradients of loss ``key`` at the requested layers only (input gradients; graph-carrying if asked)."""
        loss = self.losses[key]
        layers = list(self.layer_tensors)
        if not create_graph:  # first order: a slice of the (cached) full gradients
            first = self.key_grads(key)
            return {layer: self.layer_grad(first, layer) for layer in layers}
        if not loss.requires_grad:
            return dict.fromkeys(layers)
        grads = torch.autograd.grad(loss, [self.layer_tensors[la] for la in layers], retain_graph=True,
                                    create_graph=create_graph, allow_unused=True)
        out: dict[str, Grad] = dict(zip(layers, grads, strict=True))
        z = out.get(self.representation)
        self._z.setdefault(key, z.detach() if z is not None else None)
        return out

    def z_grad(self, key: str) -> Grad:
        """First-order gradient of loss ``key`` at the representation z (cached; computed if no method did)."""
        if key not in self._z:
            loss = self.losses[key]
            z = self.layer_tensors[self.representation]
            self._z[key] = torch.autograd.grad(loss, z, retain_graph=True, allow_unused=True)[0] \
                if loss.requires_grad else None
        g = self._z[key]
        return g.detach() if g is not None else None

    def weighted_grads(self, weights: Mapping[str, float] | None = None) -> dict[str, list[Grad]]:
        """Task group -> sum over its keys of weight_k * grad L_k w.r.t. :attr:`targets` (first order)."""
        weights = weights or {}
        out: dict[str, list[Grad]] = {}
        for task, keys in self.groups.items():
            total: list[Grad] = [None] * len(self.targets)
            for key in keys:
                total = add_grads(total, self.key_grads(key), weights.get(key, 1.0))
            out[task] = total
        return out

    @property
    def trunk_params(self) -> list[torch.Tensor]:
        """Trainable tensors below the cut (found by walking the trunk's graph once)."""
        if self._trunk_params is None:
            self._trunk_params = params_reached([t for t in self.trunk if t.requires_grad])
        return self._trunk_params

    def trunk_grads(self, leaf_grads: Sequence[Grad], retain_graph: bool = False) -> list[Grad]:
        """Gradients of the trunk parameters given gradients at the leaves (one trunk backward, not accumulated)."""
        pairs = [(t, g.detach().to(t.dtype)) for t, g in zip(self.trunk, leaf_grads, strict=True)
                 if g is not None and t.requires_grad]
        params = self.trunk_params
        if not pairs or not params:
            return [None] * len(params)
        return list(torch.autograd.grad([t for t, _ in pairs], params, [g for _, g in pairs],
                                        retain_graph=retain_graph, allow_unused=True))

    def finish(self, leaf_grads: Sequence[Grad], param_grads: Iterable[tuple[torch.Tensor, Grad]]) -> None:
        """Accumulate head-side parameter gradients and run the single trunk backward (into ``.grad``)."""
        for param, grad in param_grads:
            accumulate_grad(param, grad)
        pairs = [(t, g.detach().to(t.dtype)) for t, g in zip(self.trunk, leaf_grads, strict=True)
                 if g is not None and t.requires_grad]
        if pairs:
            torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs])

    def finish_sum(self, grads: Sequence[Grad], extra: Iterable[tuple[torch.Tensor, Grad]] = ()) -> None:
        """:meth:`finish` for a gradient list aligned with :attr:`targets` (plus other tensors' gradients)."""
        n_in = len(self.inputs)
        self.finish(grads[:self.n_leaves], [*zip(self.head_params, grads[n_in:], strict=True), *extra])


def comparable_cosine(cp: CutPass) -> float:
    """THE cosine of the step report (docs/interfaces.md): per-sample cos(grad_z L_seg, grad_z L_cls) at z, mean over samples valid for both.

    Valid = by their labels (``TASKS["seg"].valid & TASKS["cls"].valid``), never by a non-zero gradient; NaN if none.
    """
    a_key, b_key = TASK_GROUPS[:2]
    a, b = cp.z_grad(a_key), cp.z_grad(b_key)
    valid = label_valid(cp.batch, [a_key], cp.batch_size, cp.leaves[0].device) & \
        label_valid(cp.batch, [b_key], cp.batch_size, cp.leaves[0].device)
    if a is None or b is None or not bool(valid.any()):
        return math.nan
    cos, _ = per_sample_cosine(a, b)
    return mean_cosine(cos, valid)


def plain_backward(cp: CutPass, weights: Mapping[str, float] | None = None,
                   extra: Iterable[tuple[torch.Tensor, Grad]] = ()) -> dict[str, list[Grad]]:
    """``sum_k w_k L_k`` backward through the cut; returns the per-group first-order gradients (for logging)."""
    per_task = cp.weighted_grads(weights)
    total: list[Grad] = [None] * len(cp.targets)
    for grads in per_task.values():
        total = add_grads(total, grads)
    cp.finish_sum(total, extra)
    return per_task


Regulariser = Callable[[dict[str, dict[str, torch.Tensor | None]]], torch.Tensor | None]


@dataclass
class Regularised:
    """What :func:`regularised_backward` measured.

    value:      the regulariser's value (already scaled), None if it returned nothing.
    share:      ||grad regulariser|| / ||grad sum_k w_k L_k|| over every trainable tensor the step reached
                (head parameters and trunk) as applied (after ``max_share``), NaN when no regulariser gradient was
                applied.
    raw_share:  the same before ``max_share`` bounded it (equal to ``share`` when unbounded).
    at_layers:  task group -> layer -> gradient of the group at the layer (detached).
    """

    value: torch.Tensor | None
    share: float
    at_layers: dict[str, dict[str, Grad]]
    raw_share: float = math.nan


def regularised_backward(cp: CutPass, regulariser: Regulariser, *, weights: Mapping[str, float] | None = None,
                         graph_tasks: Collection[str] | None = None, through_heads: bool = True,
                         max_share: float | None = None) -> Regularised:
    """Backward of ``sum_k w_k L_k + regulariser(task gradients at the layers)``, its gradient exact and kept apart.

    1. graph-carrying gradients of each group at the layers (input gradients only: the head weight gradients'
       second-order graph would be dead weight); groups outside ``graph_tasks`` get first-order ones;
    2. ``reg = regulariser(...)``, computed by the method in float32 from those gradients;
    3. the loss part (first order, heads) and the regulariser part (second order, heads: ``through_heads``; else
       the leaves plus the head-side parameters below a higher requested layer) separately, in float32 for the
       parameters;
    4. two trunk backwards (loss part, regulariser part), so that the regulariser's share of the gradient norm is
       measured exactly and a small regulariser gradient survives bf16 autocast;
    5. with ``max_share``, the regulariser's gradient is scaled down where its norm exceeds ``max_share`` times
       the loss gradient's norm (a bound on how far a regulariser can take over the step).
    """
    weights = weights or {}
    layers = list(cp.layer_tensors)
    at_layers: dict[str, dict[str, Grad]] = {}
    for task, keys in cp.groups.items():
        graph = graph_tasks is None or task in graph_tasks
        acc: dict[str, Grad] = dict.fromkeys(layers)
        for key in keys:
            w = weights.get(key, 1.0)
            for layer, g in cp.layer_grads(key, create_graph=graph).items():
                if g is not None:
                    g = g if w == 1.0 else g * w
                    g = g if graph else g.detach()
                    prev = acc[layer]
                    acc[layer] = g if prev is None else prev + g
        at_layers[task] = acc
    reg = regulariser(at_layers)
    per_task = cp.weighted_grads(weights)
    loss_grads: list[Grad] = [None] * len(cp.targets)
    for grads in per_task.values():
        loss_grads = add_grads(loss_grads, grads)
    detached = {t: {la: (g.detach() if g is not None else None) for la, g in d.items()} for t, d in at_layers.items()}
    if reg is None or not reg.requires_grad:
        cp.finish_sum(loss_grads)
        return Regularised(reg, math.nan, detached)

    n_in = len(cp.inputs)
    if through_heads:
        slots = list(range(cp.n_leaves)) + list(range(n_in, len(cp.targets)))
    else:
        higher = [cp.layer_tensors[la] for la in layers if not any(cp.layer_tensors[la] is lf for lf in cp.leaves)]
        between = {id(p) for p in params_reached(higher)} if higher else set()
        slots = list(range(cp.n_leaves)) + [n_in + i for i, p in enumerate(cp.head_params) if id(p) in between]
    reg_grads: list[Grad] = [None] * len(cp.targets)
    for slot, g in zip(slots, torch.autograd.grad(at_least_float32(reg), [cp.targets[s] for s in slots], retain_graph=True,
                                                  allow_unused=True), strict=True):
        reg_grads[slot] = g
    trunk_loss = cp.trunk_grads(loss_grads[:cp.n_leaves], retain_graph=True)
    trunk_reg = cp.trunk_grads(reg_grads[:cp.n_leaves], retain_graph=False)
    pairs = [*zip(cp.head_params, loss_grads[n_in:], reg_grads[n_in:], strict=True),
             *zip(cp.trunk_params, trunk_loss, trunk_reg, strict=True)]
    loss_sq = sum(float(at_least_float32(gl).pow(2).sum()) for _, gl, _ in pairs if gl is not None)
    reg_sq = sum(float(at_least_float32(gr).pow(2).sum()) for _, _, gr in pairs if gr is not None)
    raw_share = math.sqrt(reg_sq / loss_sq) if loss_sq > 0 else math.nan
    factor = 1.0
    if max_share is not None and math.isfinite(raw_share) and raw_share > max_share:
        factor = max_share / raw_share
    for param, gl, gr in pairs:
        if gl is not None:
            accumulate_grad(param, at_least_float32(gl))
        if gr is not None:
            accumulate_grad(param, at_least_float32(gr) * factor if factor != 1.0 else at_least_float32(gr))
    return Regularised(reg, raw_share * factor, detached, raw_share)
