"""Naive reference implementation of an RLAR step, for the tests only (the production path goes through the cut).

Plain (uncut) forward, ``autograd.grad(L_t, z, create_graph=True)`` per task group at every layer, the penalty of
``rlar.strategies.rlar_penalty`` over the samples valid by their labels, then ``(sum L + lambda P).backward()``:
the textbook way to get the exact gradient of the paper's objective.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rlar.strategies import RLAR, rlar_penalty
from rlar.strategies.base import LossFn, Strategy
from rlar.tasks import TASKS


def _valid(batch: dict[str, Any], keys: list[str], n: int) -> torch.Tensor:
    out = torch.zeros(n, dtype=torch.bool)
    for key in keys:
        if key not in TASKS or any(k not in batch for k in ("has_mask", "label", "has_radiomics")):
            return torch.ones(n, dtype=torch.bool)
        out |= TASKS[key].valid(batch)
    return out


def naive_rlar_step(strategy: Strategy, model: nn.Module, batch: dict[str, Any], loss_fn: LossFn, step: int) -> float:
    """Fill ``.grad`` with the exact gradient of sum L + lambda(step) P; returns P (float). ``strategy``: an RLAR."""
    assert isinstance(strategy, RLAR)
    lam = strategy.applied_lambda(step)
    out = model(batch["image"])
    losses = loss_fn(out, batch)
    groups = {t: [k for k in keys if k in losses] for t, keys in strategy.tasks.items()}
    groups = {t: keys for t, keys in groups.items() if keys}
    pair = list(groups)[:2]
    layers = strategy.layers()
    n = batch["image"].shape[0]
    valid = _valid(batch, groups[pair[0]], n) & _valid(batch, groups[pair[1]], n)
    o = strategy.options
    zs = [out.features[name] for name in layers]
    grads = {}
    for task in pair:
        loss = torch.stack([losses[k] for k in groups[task]]).sum()
        grads[task] = torch.autograd.grad(loss, zs, retain_graph=True, allow_unused=True,
                                          create_graph=task not in o.constant_directions)
    terms = []
    for i in range(len(layers)):
        g_a, g_b = (grads[t][i] for t in pair)
        g_a = g_a.detach() if pair[0] in o.constant_directions else g_a
        g_b = g_b.detach() if pair[1] in o.constant_directions else g_b
        terms.append(rlar_penalty(g_a, g_b, tau=o.tau, p=o.p, absolute=o.absolute, eps=o.eps, valid=valid,
                                  space=o.space)[0])
    penalty = torch.stack(terms).mean()
    total = torch.stack(list(losses.values())).sum() + lam * penalty
    total.backward()
    return float(penalty.detach())
