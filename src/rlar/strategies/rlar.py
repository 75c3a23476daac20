"""``rlar``: Representation-Level Adversarial Regularization (the paper's method).

For tasks a = seg and b = cls (the first two tasks), at each representation z in ``layers``:

    g_t      = dL_t/dz                      per sample, shape (B, ...)  (t in {a, b})
    delta_t  = g_t / (||g_t|| + eps)        per sample, flattened
    c_i      = <delta_a,i, delta_b,i>       cosine of sample i (|c_i| with absolute=True)
    P_z      = mean_{i valid} max(0, c_i - tau)^p
    P        = mean_z P_z
    total    = sum_k L_k + lambda(step) * P,  lambda(step) = lambda * min(1, step / warmup_steps)

``valid`` samples have a non-zero gradient for both tasks: a sample with no mask (or an unknown label)
contributes no penalty and no NaN. The gradient of P is exact (second-order autograd through the
heads). Because the losses are batch means, g_t carries a 1/B factor; the cosine is scale invariant so
that is harmless. BatchNorm in the heads couples samples, so g_t of a sample is not strictly "its own";
we accept this, as every per-sample gradient method that runs the model in train mode does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from rlar.errors import ConfigError

from ._cut import CutPass, cut_backward, floats, group_losses, mean_cosine, per_sample_cosine
from .base import LossFn, StepReport, Strategy


def rlar_penalty(g_a: torch.Tensor | None, g_b: torch.Tensor | None, *, tau: float = 0.0, p: float = 2.0,
                 absolute: bool = False, eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Penalty of one representation from the per-sample task gradients; returns (P_z, cos (B,), valid (B,)).

    A missing gradient (the task does not reach z) counts as zero: no valid sample, P_z = 0.
    """
    if g_a is None or g_b is None:
        ref = g_a if g_a is not None else g_b
        if ref is None:
            raise ValueError("neither task has a gradient at the representation")
        zeros = ref.new_zeros(ref.shape[0])
        return zeros.sum(), zeros, torch.zeros_like(zeros, dtype=torch.bool)
    cos, valid = per_sample_cosine(g_a, g_b, eps)
    c = cos.abs() if absolute else cos
    per_sample = torch.clamp(c - tau, min=0.0) ** p
    per_sample = torch.where(valid, per_sample, torch.zeros_like(per_sample))
    return per_sample.sum() / valid.sum().clamp(min=1), cos, valid


class RLAR(Strategy):
    """Weighted-sum training plus the RLAR penalty on the alignment of the tasks' adversarial directions.

    Options:
      layers:   representation name(s) where the penalty is measured (default: ``representation``);
                with several, the penalty is their mean and the cut is at the lowest one (the higher
                ones are head-side tensors of the cut graph, so their gradients are exact too).
      tau, p, absolute, eps: see the module docstring.
      lambda_rlar (alias ``lambda`` in configs), warmup_steps: penalty weight and its linear warm-up.
      penalty_through_heads: True (default) = the exact gradient of ``total`` (P reaches the head
                parameters too), as ``(sum L + lambda P).backward()`` would give. False = P shapes only the
                representation, i.e. the trunk (the heads cannot lower P by bending their own Jacobians);
                measured about as fast, see docs/strategies.md.
      constant_directions: tasks whose delta_t is treated as a constant (stop-gradient) in P, e.g.
                ["seg"]: only the other task's direction is moved. Not the paper's exact gradient; it
                skips the double backward through the (large) segmentation decoder, which is most of
                RLAR's extra cost. Default: none (both directions differentiated).
      every_n_steps: lazy regularisation (Karras et al., StyleGAN2, 2020): the second-order penalty gradient is
                applied on one step in n, with weight n * lambda, so its expected weight per step is unchanged
                while its cost is paid 1/n as often. The cosine is still measured (first order) on every step.
                Default 1: the exact penalty on every step.
      naive:    reference implementation (plain forward, autograd.grad(create_graph=True) at z, then
                ``(total + lambda P).backward()``): the exact gradient, like the default
                penalty_through_heads=True; kept for tests and the benchmark.
    """

    name = "rlar"
    option_aliases = {"lambda": "lambda_rlar"}

    def __init__(self, tasks: Mapping[str, list[str]] | None = None, representation: str = "bottleneck",
                 layers: str | Sequence[str] | None = None, tau: float = 0.0, p: float = 2.0,
                 absolute: bool = False, lambda_rlar: float = 0.1, warmup_steps: int = 0, eps: float = 1e-12,
                 penalty_through_heads: bool = True, constant_directions: Sequence[str] = (),
                 every_n_steps: int = 1, naive: bool = False) -> None:
        super().__init__(tasks, representation)
        if layers is None:
            layers = [representation]
        elif isinstance(layers, str):
            layers = [layers]
        self.layers = list(dict.fromkeys(layers))
        if not self.layers:
            raise ConfigError("layers", "must name at least one representation")
        if not -1.0 <= tau < 1.0:
            raise ConfigError("tau", f"must lie in [-1, 1), got {tau}")
        if p <= 0:
            raise ConfigError("p", f"must be > 0, got {p}")
        if lambda_rlar < 0:
            raise ConfigError("lambda", f"must be >= 0, got {lambda_rlar}")
        if warmup_steps < 0:
            raise ConfigError("warmup_steps", f"must be >= 0, got {warmup_steps}")
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ConfigError("every_n_steps", f"must be an integer >= 1, got {every_n_steps!r}")
        self.every_n_steps = every_n_steps
        if eps <= 0:
            raise ConfigError("eps", f"must be > 0, got {eps}")
        self.tau, self.p, self.absolute, self.eps = float(tau), float(p), bool(absolute), float(eps)
        self.lambda_rlar, self.warmup_steps = float(lambda_rlar), int(warmup_steps)
        self.penalty_through_heads, self.naive = bool(penalty_through_heads), bool(naive)
        if isinstance(constant_directions, str):
            constant_directions = [constant_directions]
        self.constant_directions = frozenset(constant_directions)

    def current_lambda(self, step: int) -> float:
        """lambda * min(1, step / warmup_steps): 0 at step 0 when warming up, full weight from warmup_steps on."""
        if self.warmup_steps == 0:
            return self.lambda_rlar
        return self.lambda_rlar * min(1.0, max(step, 0) / self.warmup_steps)

    def penalty(self, grads: Mapping[str, Mapping[str, torch.Tensor | None]], pair: Sequence[str]
                ) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        """Mean over ``layers`` of the per-layer penalty; also returns each layer's (cos, valid)."""
        terms, cosines = [], {}
        for layer in self.layers:
            g_a, g_b = (grads[t][layer] for t in pair)
            g_a = g_a.detach() if g_a is not None and pair[0] in self.constant_directions else g_a
            g_b = g_b.detach() if g_b is not None and pair[1] in self.constant_directions else g_b
            pen, cos, valid = rlar_penalty(g_a, g_b, tau=self.tau, p=self.p,
                                           absolute=self.absolute, eps=self.eps)
            terms.append(pen)
            cosines[layer] = (cos, valid)
        return torch.stack(terms).mean(), cosines

    def applied_lambda(self, step: int) -> float:
        """Weight the penalty gets on this step: n * lambda(step) on every n-th step, else 0 (lazy regularisation)."""
        if step % self.every_n_steps != 0:
            return 0.0
        return self.current_lambda(step) * self.every_n_steps

    def step(self, model: nn.Module, batch: Mapping[str, Any], loss_fn: LossFn, step: int) -> StepReport:
        lam = self.applied_lambda(step)
        if self.naive:
            return self._naive_step(model, batch, loss_fn, lam)
        needed = list(dict.fromkeys([*self.layers, self.representation]))
        cp = CutPass(model, batch, loss_fn, self.tasks, needed)
        pair = list(cp.task_losses)[:2]
        record: dict[str, Any] = {}

        def regulariser(grads: dict[str, dict[str, torch.Tensor | None]]) -> torch.Tensor | None:
            record["penalty"], record["cos"] = self.penalty(grads, pair)
            return lam * record["penalty"] if lam > 0 else None

        multitask = len(pair) == 2
        # With lambda = 0 (warm-up start) the penalty is only logged: no second-order graph is built.
        grads = cut_backward(cp, cp.task_losses, regulariser=regulariser if multitask and lam > 0 else None,
                             through_heads=self.penalty_through_heads,
                             graph_tasks=[t for t in pair if t not in self.constant_directions])
        if multitask and "penalty" not in record:
            record["penalty"], record["cos"] = self.penalty(grads, pair)
        return self._report(cp.losses, grads, pair, record, lam)

    def _naive_step(self, model: nn.Module, batch: Mapping[str, Any], loss_fn: LossFn, lam: float) -> StepReport:
        out = model(batch["image"])
        losses = loss_fn(out, batch)
        task_losses = group_losses(losses, self.tasks)
        pair = list(task_losses)[:2]
        needed = list(dict.fromkeys([*self.layers, self.representation]))
        zs = [out.features[name] for name in needed]
        total = torch.stack(list(losses.values())).sum()
        record: dict[str, Any] = {}
        grads: dict[str, dict[str, torch.Tensor | None]] = {}
        if len(pair) == 2:
            for task in pair:
                g = torch.autograd.grad(task_losses[task], zs, retain_graph=True, allow_unused=True,
                                        create_graph=lam > 0 and task not in self.constant_directions)
                grads[task] = dict(zip(needed, g, strict=True))
            record["penalty"], record["cos"] = self.penalty(grads, pair)
            if lam > 0:
                total = total + lam * record["penalty"]
        total.backward()
        return self._report(losses, grads, pair, record, lam)

    def _report(self, losses: Mapping[str, torch.Tensor], grads: Mapping[str, Mapping[str, torch.Tensor | None]],
                pair: Sequence[str], record: Mapping[str, Any], lam: float) -> StepReport:
        total = sum(float(v.detach()) for v in losses.values())
        if len(pair) < 2:
            return StepReport(floats(losses), total, None, {"lambda": lam, "penalty": 0.0})
        pen = float(record["penalty"].detach())
        if self.representation in record["cos"]:
            cosine = mean_cosine(*record["cos"][self.representation])
        else:
            a, b = grads[pair[0]][self.representation], grads[pair[1]][self.representation]
            cosine = float("nan") if a is None or b is None else mean_cosine(*per_sample_cosine(a, b, self.eps))
        extra = {"lambda": lam, "penalty": pen}
        if len(self.layers) > 1:
            extra.update({f"cosine_{layer}": mean_cosine(*cv) for layer, cv in record["cos"].items()})
        return StepReport(floats(losses), total + lam * pen, cosine, extra)
