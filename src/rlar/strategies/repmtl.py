r"""``repmtl``: Rep-MTL (Wang, Li & Xu, ICCV 2025, arXiv 2507.21049), representation-level task saliency.

Task saliency is the gradient of each task loss w.r.t. the shared representation z, S_t = dL_t/dz,
shape (B, C, H, W) (or (B, D) for a vector z). Rep-MTL adds two regularisers built from it, on top of
equal-weight training, and leaves the optimiser untouched:

Spatial saliency (channel aggregation, per sample b and position i; for a vector z each feature is a
"position"), rescaled per sample and task so that tasks with losses of different scale are comparable:

    A_t[b, i]  = mean_c |S_t[b, c, i]|
    Ã_t[b, i]  = A_t[b, i] / (mean_i A_t[b, i] + eps)

(a) Task-specific Saliency Regulation (TSR): the tasks' saliency at a position, turned into a
    distribution over tasks, should be peaked (each position keeps a dominant task: task-specific
    patterns are preserved, not blurred into a compromise), i.e. low entropy:

    P[b, t, i] = softmax_t(Ã_t[b, i]),   L_tsr = mean_{b valid, i} ( -sum_t P log P ) / log T

(b) Cross-task Saliency Alignment (CSA): sample-wise contrastive alignment; the saliency vectors of
    the same sample under two tasks are a positive pair, those of other samples in the batch negatives:

    v_t[b] = Ã_t[b] / ||Ã_t[b]||,   s[b, b'] = <v_a[b], v_b[b']> / temperature
    L_csa  = ( CE(s, diag) + CE(s^T, diag) ) / 2     over the samples valid for both tasks

    total  = sum_k L_k + lambda_tsr L_tsr + lambda_csa L_csa

Choices we made where the description leaves freedom (documented in docs/strategies.md): the per-sample
mean rescaling of A_t, the entropy normalised by log T (so lambda_tsr does not depend on the task count),
symmetric InfoNCE over the first two tasks (with more tasks, CSA averages over all ordered pairs would
be the natural extension; this project has two), and samples with a zero saliency for a task (no mask,
unknown label) are excluded from both terms. The regulariser gradients are exact (second-order autograd),
computed through the cut like RLAR's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rlar.errors import ConfigError

from ._cut import CutPass, cut_backward, floats, pair_cosine
from .base import LossFn, StepReport, Strategy


def spatial_saliency(s: torch.Tensor, eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, *spatial) or (B, D) gradient -> rescaled spatial saliency Ã (B, N) and valid (B,) (non-zero)."""
    a = s.abs().mean(1).flatten(1) if s.ndim > 2 else s.abs()
    m = a.mean(1)
    valid = m > eps
    scale = torch.where(valid, m, torch.ones_like(m))
    return a / scale[:, None], valid


def tsr_loss(sal: list[torch.Tensor], valid: torch.Tensor) -> torch.Tensor:
    """Normalised entropy over tasks of softmax_t(Ã_t), averaged over valid samples and positions."""
    stacked = torch.stack(sal, dim=1)  # (B, T, N)
    logp = torch.log_softmax(stacked, dim=1)
    entropy = -(logp.exp() * logp).sum(1).mean(1) / math.log(len(sal))  # (B,)
    entropy = torch.where(valid, entropy, torch.zeros_like(entropy))
    return entropy.sum() / valid.sum().clamp(min=1)


def csa_loss(sal_a: torch.Tensor, sal_b: torch.Tensor, valid: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric sample-wise InfoNCE between two tasks' saliency vectors (valid samples only; 0 if < 2)."""
    idx = valid.nonzero().flatten()
    if idx.numel() < 2:
        return (sal_a.sum() + sal_b.sum()) * 0.0
    va = F.normalize(sal_a[idx], dim=1)  # rows of valid samples have a positive mean, hence norm > 0
    vb = F.normalize(sal_b[idx], dim=1)
    logits = va @ vb.T / temperature
    target = torch.arange(idx.numel(), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


class RepMTL(Strategy):
    """Equal-weight sum of the losses plus Rep-MTL's TSR and CSA saliency regularisers at ``representation``."""

    name = "repmtl"

    def __init__(self, tasks: Mapping[str, list[str]] | None = None, representation: str = "bottleneck",
                 lambda_tsr: float = 0.1, lambda_csa: float = 0.1, temperature: float = 0.1,
                 eps: float = 1e-12, penalty_through_heads: bool = True) -> None:
        super().__init__(tasks, representation)
        for key, value in (("lambda_tsr", lambda_tsr), ("lambda_csa", lambda_csa)):
            if value < 0:
                raise ConfigError(key, f"must be >= 0, got {value}")
        if temperature <= 0:
            raise ConfigError("temperature", f"must be > 0, got {temperature}")
        self.lambda_tsr, self.lambda_csa = float(lambda_tsr), float(lambda_csa)
        self.temperature, self.eps = float(temperature), float(eps)
        self.penalty_through_heads = bool(penalty_through_heads)

    def regularisers(self, saliency: Mapping[str, torch.Tensor | None]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(L_tsr, L_csa) from the per-task saliency at z; None with fewer than two tasks reaching z."""
        present = [s for s in saliency.values() if s is not None]
        if len(present) < 2:
            return None
        pairs = [spatial_saliency(s, self.eps) for s in present]
        sal = [a for a, _ in pairs]
        valid = torch.stack([v for _, v in pairs]).all(0)
        return tsr_loss(sal, valid), csa_loss(sal[0], sal[1], valid, self.temperature)

    def step(self, model: nn.Module, batch: Mapping[str, Any], loss_fn: LossFn, step: int) -> StepReport:
        cp = CutPass(model, batch, loss_fn, self.tasks, [self.representation])
        record: dict[str, torch.Tensor] = {}
        layer = self.representation

        def regulariser(grads: dict[str, dict[str, torch.Tensor | None]]) -> torch.Tensor | None:
            terms = self.regularisers({t: g[layer] for t, g in grads.items()})
            if terms is None:
                return None
            record["tsr"], record["csa"] = terms
            return self.lambda_tsr * terms[0] + self.lambda_csa * terms[1]

        active = len(cp.task_losses) >= 2 and (self.lambda_tsr > 0 or self.lambda_csa > 0)
        grads = cut_backward(cp, cp.task_losses, regulariser=regulariser if active else None,
                             through_heads=self.penalty_through_heads)
        if len(cp.task_losses) >= 2 and not record:  # lambdas are 0: log the terms anyway, from the detached grads
            terms = self.regularisers({t: g[layer] for t, g in grads.items()})
            if terms is not None:
                record["tsr"], record["csa"] = terms
        extra = {k: float(v.detach()) for k, v in record.items()}
        total = sum(float(v.detach()) for v in cp.losses.values())
        total += self.lambda_tsr * extra.get("tsr", 0.0) + self.lambda_csa * extra.get("csa", 0.0)
        return StepReport(floats(cp.losses), total, pair_cosine(grads, list(cp.task_losses), layer, self.eps), extra)
