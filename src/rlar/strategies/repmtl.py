r"""``repmtl``: Rep-MTL (Wang, Li & Xu, ICCV 2025, arXiv 2507.21049), representation-level task saliency.

Task saliency is the gradient of each task loss w.r.t. the shared representation z, S_t = dL_t/dz, shape
(B, C, H, W) (a vector z (B, D) is read as C = D channels at one position). On top of equal-weight training:

(a) Task-specific Saliency Regulation (TSR), the paper's equations: channel aggregate
    S_hat_t = (1/C) sum_c S_t  (B, H, W); per location i, P_{i,t} = |S_hat_{i,t}| / sum_k |S_hat_{i,k}|;
    L_tsr = mean_i ( -sum_t P_{i,t} log P_{i,t} )       (i runs over the valid samples' locations)

(b) Cross-task Saliency Alignment (CSA), the paper's equations: per sample b, the task affinity
    M_{t,b} = S_{t,b} S_{t,b}^T in R^{C x C} (S_{t,b} is C x HW); the anchor A_b in R^{C x T} holds the spatial
    mean of each task's saliency (one column per task) and A_hat_b = A_b A_b^T; z^a_b and z^t_b are the
    L2-normalised flattened A_hat_b and M_{t,b}. Positives: (z^a_b, z^t_b) for every task t; negatives: the other
    samples' anchors (z^a_b, z^a_k), k != b:
    L_csa = (1/B) sum_b sum_t -log( exp(sim(z^a_b, z^t_b)/temp) / sum_{k != b} exp(sim(z^a_b, z^a_k)/temp) )

    total = sum_k L_k + lambda_tsr L_tsr + lambda_csa L_csa

Choices where the text leaves freedom (docs/strategies.md): the T positives of a sample are SUMMED (one InfoNCE
term per task); the denominator holds the negatives only, as written; temperature 1.0: the sims are cosines of
PSD matrices, hence in [0, 1], and at the usual InfoNCE 0.1 CSA's gradient was 9.5x the task gradients' norm at
initialisation on the compact model (0.48x at 1.0, 1.0x at 0.5; docs/strategies.md), so with lambda_csa in the
paper's range the tasks would no longer drive training; both terms use only the
samples valid for every task group by their labels (a sample without a mask has no segmentation saliency to
align); CSA needs two such samples (it is 0 otherwise). The regulariser gradients are exact (second-order
autograd through the heads), computed in float32 through the cut like RLAR's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeFloat, PositiveFloat

from ._cut import CutPass, at_least_float32, plain_backward, regularised_backward, unit_scaled
from .base import Contribution, Strategy, StrategyOptions


def _channels(s: torch.Tensor) -> torch.Tensor:
    """(B, C, *spatial) or (B, D) saliency -> (B, C, N) float32 with unit RMS per sample (a vector is C = D channels
    at N = 1 position).

    Scale-free (docs/strategies.md, "Rep-MTL at any scale"): each task's saliency of each sample is divided by its
    own root mean square, so TSR compares where the tasks' saliencies lie, not their magnitudes (on DDTI
    ||grad_z L_seg|| is ~1e-9 of ||grad_z L_cls|| at initialisation, which made P_cls = 1 everywhere), and CSA's
    affinity matrices are far above F.normalize's eps (S S^T of the raw seg saliency was ~1e-18). The division is
    part of the graph (the regularisers see the saliency's direction); :func:`unit_scaled` first takes out the
    scale exactly so that no square underflows float32. An exactly zero saliency stays zero.
    """
    unit, nonzero = unit_scaled(s)
    rms = torch.sqrt(torch.where(nonzero, unit.pow(2).mean(1), torch.ones_like(nonzero, dtype=unit.dtype)))
    return (unit / rms[:, None]).reshape(s.shape[0], s.shape[1], -1)


def tsr_loss(saliency: list[torch.Tensor], valid: torch.Tensor) -> torch.Tensor:
    """Mean over valid samples and locations of the entropy over tasks of P_{i,t} = |S_hat_t| / sum_k |S_hat_k|."""
    s_hat = torch.stack([_channels(s).mean(1).abs() for s in saliency], dim=1)  # (B, T, N)
    denom = s_hat.sum(1, keepdim=True)
    prob = s_hat / torch.where(denom > 0, denom, torch.ones_like(denom))
    entropy = -(prob * torch.log(prob.clamp_min(1e-30))).sum(1)  # (B, N); a location with no saliency: 0
    n = valid.sum().clamp(min=1) * entropy.shape[1]
    return torch.where(valid[:, None], entropy, torch.zeros_like(entropy)).sum() / n


def csa_loss(saliency: list[torch.Tensor], valid: torch.Tensor, temperature: float) -> torch.Tensor:
    """The paper's sample-wise contrastive alignment of task affinities to the anchor (valid samples; 0 if < 2)."""
    idx = valid.nonzero().flatten()
    if idx.numel() < 2:
        return sum(at_least_float32(s).sum() for s in saliency) * 0.0  # type: ignore[return-value]
    s = [_channels(x)[idx] for x in saliency]  # T x (B', C, N)
    z_task = [F.normalize(torch.bmm(x, x.transpose(1, 2)).flatten(1), dim=1) for x in s]  # T x (B', C*C)
    anchor = torch.stack([x.mean(2) for x in s], dim=2)  # (B', C, T)
    z_anchor = F.normalize(torch.bmm(anchor, anchor.transpose(1, 2)).flatten(1), dim=1)  # (B', C*C)
    pos = torch.stack([(z_anchor * zt).sum(1) for zt in z_task], dim=1) / temperature  # (B', T)
    neg = z_anchor @ z_anchor.T / temperature
    eye = torch.eye(len(idx), dtype=torch.bool, device=neg.device)
    lse = torch.logsumexp(neg.masked_fill(eye, -math.inf), dim=1)  # (B',): over k != b
    return (lse[:, None] - pos).sum(1).mean()


class RepMTLOptions(StrategyOptions):
    # 0.1, not the paper's 1.0: chosen on DDTI validation (docs/strategies.md "Rep-MTL weights on DDTI"); the paper
    # reports robustness in [0.7, 1.5], where the normalised regularisers cost DDTI 0.2-0.3 validation Dice.
    lambda_tsr: NonNegativeFloat = Field(0.1, description="weight of TSR (DDTI validation; paper: 1.0)")
    lambda_csa: NonNegativeFloat = Field(0.1, description="weight of CSA (DDTI validation; paper: 1.0)")
    temperature: PositiveFloat = Field(1.0, description="InfoNCE temperature of CSA (see the module docstring)")
    max_share: PositiveFloat | None = Field(1.0, description="bound on the regularisers' gradient norm as a fraction of "
                                                             "the loss gradient's (None: unbounded; docs/strategies.md)")
    penalty_through_heads: bool = Field(True, description="the regularisers' gradient also reaches the heads (exact)")


class RepMTL(Strategy):
    """Equal-weight sum of the losses plus Rep-MTL's TSR and CSA saliency regularisers at ``representation``."""

    name = "repmtl"
    Options = RepMTLOptions
    options: RepMTLOptions

    def regularisers(self, saliency: list[torch.Tensor | None], valid: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(L_tsr, L_csa) from the per-task saliency at z; None with fewer than two tasks reaching z."""
        present = [s for s in saliency if s is not None]
        if len(present) < 2:
            return None
        return tsr_loss(present, valid), csa_loss(present, valid, self.options.temperature)

    def backward(self, cp: CutPass, step: int) -> Contribution:
        tasks = list(cp.groups)
        if len(tasks) < 2:
            plain_backward(cp)
            return Contribution()
        o = self.options
        valid = cp.group_valid(tasks[0])
        for task in tasks[1:]:
            valid = valid & cp.group_valid(task)
        record: dict[str, torch.Tensor] = {}
        layer = self.representation

        def regulariser(grads: dict[str, dict[str, torch.Tensor | None]]) -> torch.Tensor | None:
            terms = self.regularisers([grads[t][layer] for t in tasks], valid)
            if terms is None:
                return None
            record["tsr"], record["csa"] = terms
            return o.lambda_tsr * terms[0] + o.lambda_csa * terms[1]

        share = raw_share = math.nan
        if o.lambda_tsr > 0 or o.lambda_csa > 0:
            result = regularised_backward(cp, regulariser, through_heads=o.penalty_through_heads,
                                          max_share=o.max_share)
            share, raw_share = result.share, result.raw_share
        else:  # both weights 0: log the terms anyway, from first-order gradients
            per_task = plain_backward(cp)
            regulariser({t: {layer: cp.layer_grad(per_task[t], layer)} for t in tasks})
        values = {k: float(v.detach()) for k, v in record.items()}
        reg = o.lambda_tsr * values.get("tsr", 0.0) + o.lambda_csa * values.get("csa", 0.0)
        applied = share if math.isfinite(share) else 0.0
        return Contribution(regulariser=reg, extra={**values, "penalty": reg, "penalty_share": share,
                                                    "penalty_share_all_steps": applied,
                                                    "penalty_share_raw": raw_share})
