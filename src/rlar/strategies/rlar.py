"""``rlar``: Representation-Level Adversarial Regularization (the paper's method).

For the task groups a = seg and b = cls (the first two groups), at each representation z in ``layers``:

    g_t      = dL_t/dz                        per sample, shape (B, C, H, W)   (t in {a, b})
    v_t      = S(g_t)                          the comparison space: "tensor" = flatten(g_t) (C*H*W values),
                                               "channel" = mean over H, W of g_t (C values)
    delta_t  = v_t / (||v_t|| + eps)          scale-free: v_t is first divided by its own largest |value|, so
                                               eps and the validity test are relative to each gradient's scale
    c_i      = <delta_a,i, delta_b,i>          cosine of sample i (|c_i| with absolute=True)
    P_z      = mean_{i valid} max(0, c_i - tau)^p
    P        = mean_z P_z
    total    = sum_k L_k + lambda(step) * P,   lambda(step) = lambda_rlar * min(1, step / warmup_steps)

Why "channel": the classification branch average-pools z, so grad_z L_cls is constant over space within each
channel; the component of g_seg that varies over space is invisible to the classifier and only dilutes the tensor
cosine (it is bounded by ||sum_hw g_seg|| / (sqrt(HW) ||g_seg||), about 0.1 at 128 px). The channel space keeps
exactly the part of g_seg the classifier can read, so "alignment" there is the competition for the channels.

``valid`` samples carry a label for both groups (``rlar.tasks.TASKS[..].valid``: a mask for seg, a known level or a
radiomics target for the cls group), never decided by a non-zero gradient; a batch with none has P = 0. The
gradient of P is exact (second-order autograd through the heads), computed and kept in float32 apart from the
loss gradient (so bf16 autocast does not round it away), and its share of the gradient norm is measured on every
step it is applied. Lazy regularisation (``every_n_steps``) applies n * lambda on one step in n. Because the
losses are batch means, g_t carries a 1/B factor; the cosine is scale invariant so that is harmless. BatchNorm in
the heads couples samples, so g_t of a sample is not strictly "its own"; we accept this, as every per-sample
gradient method that runs the model in train mode does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
)

from ._cut import CutPass, at_least_float32, per_sample_cosine, plain_backward, regularised_backward
from .base import Contribution, Strategy, StrategyOptions

Space = Literal["tensor", "channel"]


def to_space(g: torch.Tensor, space: Space) -> torch.Tensor:
    """(B, ...) gradient -> (B, D) float32 (float64 stays) vectors of the comparison space (see the module docstring)."""
    g = at_least_float32(g)
    if space == "channel" and g.ndim > 2:
        return g.mean(dim=tuple(range(2, g.ndim)))
    return g.flatten(1)


def rlar_penalty(g_a: torch.Tensor | None, g_b: torch.Tensor | None, *, tau: float = 0.0, p: float = 2.0,
                 absolute: bool = False, eps: float = 1e-12, valid: torch.Tensor | None = None,
                 space: Space = "tensor") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Penalty of one representation from the per-sample task gradients; returns (P_z, cos (B,), used (B,)).

    ``valid`` (B,) bool: samples allowed to count (by their labels; default all); ``used`` = valid samples whose
    two gradients are non-zero (the others cannot define a direction). A missing gradient (the task does not
    reach z) counts as zero: no sample is used and P_z = 0. Everything is computed in float32.
    """
    if g_a is None or g_b is None:
        ref = g_a if g_a is not None else g_b
        if ref is None:
            raise ValueError("neither task has a gradient at the representation")
        zeros = ref.new_zeros(ref.shape[0], dtype=torch.float32)
        return zeros.sum(), zeros, torch.zeros_like(zeros, dtype=torch.bool)
    cos, nonzero = per_sample_cosine(to_space(g_a, space), to_space(g_b, space), eps)
    used = nonzero if valid is None else nonzero & valid.to(nonzero.device)
    c = cos.abs() if absolute else cos
    per_sample = torch.clamp(c - tau, min=0.0) ** p
    per_sample = torch.where(used, per_sample, torch.zeros_like(per_sample))
    return per_sample.sum() / used.sum().clamp(min=1), cos, used


class RLAROptions(StrategyOptions):
    layers: list[str] | None = Field(None, description="representation(s) penalised (default: [representation]); "
                                                       "the penalty is their mean")
    space: Space = Field("channel", description="comparison space of the directions: 'tensor' (C*H*W) or "
                                                "'channel' (spatial mean per channel: what the pooled classifier reads)")
    tau: float = Field(0.0, ge=-1.0, lt=1.0, description="hinge threshold: cosines above tau are penalised")
    p: PositiveFloat = Field(2.0, description="exponent of the hinge")
    absolute: bool = Field(False, description="penalise |cos| (anti-alignment too)")
    # 0.5: the smallest weight of the DDTI sweep whose penalty reaches 1 % of the gradient averaged over all steps
    # (docs/strategies.md, "Choosing the defaults on DDTI"); 0.05 had 0.15 %.
    lambda_rlar: NonNegativeFloat = Field(0.5, description="penalty weight (per step; see every_n_steps)")
    warmup_steps: NonNegativeInt = Field(0, description="linear warm-up of lambda over this many steps")
    every_n_steps: PositiveInt = Field(8, description="lazy regularisation: the exact penalty gradient with weight "
                                                      "n * lambda on one step in n (1 = every step)")
    eps: PositiveFloat = Field(1e-12, description="guard of the normalisation, relative to each gradient's own "
                                                  "scale (the directions are computed scale-free)")
    max_share: PositiveFloat | None = Field(None, description="bound on the penalty gradient's norm as a fraction "
                                                              "of the loss gradient's on the steps it is applied "
                                                              "(None: unbounded)")
    penalty_through_heads: bool = Field(True, description="P's gradient also reaches the head parameters (exact); "
                                                          "False: it shapes only the trunk")
    constant_directions: list[str] = Field(default_factory=list,
                                           description="task groups whose direction is a stop-gradient target in P")

    @field_validator("layers", "constant_directions", mode="before")
    @classmethod
    def _one_name_is_a_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("layers")
    @classmethod
    def _non_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("must name at least one representation")
        return None if value is None else list(dict.fromkeys(value))


class RLAR(Strategy):
    """Weighted-sum training plus the RLAR penalty on the alignment of the tasks' adversarial directions."""

    name = "rlar"
    Options = RLAROptions
    options: RLAROptions

    def layers(self) -> list[str]:
        return list(self.options.layers or [self.representation])

    def current_lambda(self, step: int) -> float:
        """lambda * min(1, step / warmup_steps): 0 at step 0 when warming up, full weight from warmup_steps on."""
        o = self.options
        if o.warmup_steps == 0:
            return o.lambda_rlar
        return o.lambda_rlar * min(1.0, max(step, 0) / o.warmup_steps)

    def applied_lambda(self, step: int) -> float:
        """Weight the penalty gets on this step: n * lambda(step) on every n-th step, else 0 (lazy regularisation)."""
        n = self.options.every_n_steps
        return self.current_lambda(step) * n if step % n == 0 else 0.0

    def penalty(self, grads: Mapping[str, Mapping[str, torch.Tensor | None]], pair: Sequence[str],
                valid: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        """Mean over ``layers`` of the per-layer penalty; also returns each layer's (cos, used)."""
        o = self.options
        terms, cosines = [], {}
        for layer in self.layers():
            g_a, g_b = (grads[t][layer] for t in pair)
            g_a = g_a.detach() if g_a is not None and pair[0] in o.constant_directions else g_a
            g_b = g_b.detach() if g_b is not None and pair[1] in o.constant_directions else g_b
            pen, cos, used = rlar_penalty(g_a, g_b, tau=o.tau, p=o.p, absolute=o.absolute, eps=o.eps, valid=valid,
                                          space=o.space)
            terms.append(pen)
            cosines[layer] = (cos, used)
        return torch.stack(terms).mean(), cosines

    def backward(self, cp: CutPass, step: int) -> Contribution:
        pair = list(cp.groups)[:2]
        lam = self.applied_lambda(step)
        if len(pair) < 2:
            plain_backward(cp)
            return Contribution()
        valid = cp.group_valid(pair[0]) & cp.group_valid(pair[1])
        record: dict[str, torch.Tensor] = {}
        cosines: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

        def regulariser(grads: dict[str, dict[str, torch.Tensor | None]]) -> torch.Tensor | None:
            record["penalty"], found = self.penalty(grads, pair, valid)
            cosines.update(found)
            return lam * record["penalty"] if lam > 0 else None

        share = math.nan
        if lam > 0:
            constant = set(self.options.constant_directions)
            result = regularised_backward(cp, regulariser, graph_tasks=[t for t in pair if t not in constant],
                                          through_heads=self.options.penalty_through_heads,
                                          max_share=self.options.max_share)
            share = result.share
        else:  # lambda = 0 (warm-up start, or an off-step of lazy regularisation): measured, first order only
            per_task = plain_backward(cp)
            regulariser({t: {la: cp.layer_grad(per_task[t], la) for la in self.layers()} for t in pair})
        pen = float(record["penalty"].detach())
        # penalty_share: on the steps the penalty is applied; penalty_share_all_steps: 0 on the others, so its epoch
        # mean is the penalty's average push relative to the tasks' (what lazy regularisation amounts to).
        extra = {"lambda": lam, "penalty": pen, "penalty_share": share,
                 "penalty_share_all_steps": share if lam > 0 and math.isfinite(share) else 0.0,
                 **self._space_stats(cosines)}
        return Contribution(regulariser=lam * pen, extra=extra)

    def _space_stats(self, cosines: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
        """cos_space and hinge_active (means over layers), plus cos_space_<layer> with several layers."""
        o = self.options
        per_layer: dict[str, float] = {}
        active: list[float] = []
        for layer, (cos, used) in cosines.items():
            n = int(used.sum())
            c = cos.detach()[used]
            per_layer[layer] = float(c.mean()) if n else math.nan
            c = c.abs() if o.absolute else c
            active.append(float((c > o.tau).float().mean()) if n else math.nan)
        finite = [v for v in per_layer.values() if math.isfinite(v)]
        finite_active = [v for v in active if math.isfinite(v)]
        stats = {"cos_space": sum(finite) / len(finite) if finite else math.nan,
                 "hinge_active": sum(finite_active) / len(finite_active) if finite_active else math.nan}
        if len(per_layer) > 1:
            stats.update({f"cos_space_{layer}": v for layer, v in per_layer.items()})
        return stats
