"""Rep-MTL as published: TSR and CSA on hand-checkable cases (numpy), non-zero gradients with a pooled
classification saliency (the old version's CSA was log B with zero gradient there), exact gradients (cut vs naive
second-order autograd), zero-saliency safety."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from rlar.strategies import get_strategy
from rlar.strategies.base import Strategy
from rlar.strategies.repmtl import RepMTL, csa_loss, tsr_loss

from ._tiny import TinyNet, grad_of, make_batch, simple_loss


def _unit_rms(x: torch.Tensor) -> torch.Tensor:
    """Each sample's saliency divided by its root mean square: what TSR and CSA see (scale-free saliency)."""
    return x / x.pow(2).flatten(1).mean(1).sqrt().view(-1, *([1] * (x.ndim - 1)))


def test_tsr_is_the_entropy_of_normalised_channel_aggregates() -> None:
    # B = 1, C = 2 channels, two locations; S_hat = the channel mean at each location. Both saliencies have the
    # same RMS (sqrt(5.5)), so TSR's per-sample normalisation divides them by the same number.
    r = 2.0 * 2.0**0.5
    s_a = torch.tensor([[[1.0, 2.0], [1.0, 4.0]]])  # S_hat_a = ((1+1)/2, (2+4)/2) = (1, 3)
    s_b = torch.tensor([[[-2.0, 1.0 + r], [0.0, 1.0 - r]]])  # S_hat_b = (-1, 1) -> |.| = (1, 1)
    torch.testing.assert_close(s_a / _unit_rms(s_a), s_b.abs().pow(2).mean().sqrt().expand(1, 2, 2))
    p = np.array([[0.5, 0.5], [0.75, 0.25]])  # location 0: (1, 1) / 2; location 1: (3, 1) / 4
    expected = float(np.mean(-(p * np.log(p)).sum(1)))
    got = float(tsr_loss([s_a, s_b], torch.tensor([True])))
    assert got == pytest.approx(expected)
    assert float(tsr_loss([s_a, s_a], torch.tensor([True]))) == pytest.approx(math.log(2))  # equal saliency: max
    peaked = torch.tensor([[[5.0, 0.0]]]), torch.tensor([[[0.0, 5.0]]])  # one task per location: zero entropy
    assert float(tsr_loss(list(peaked), torch.tensor([True]))) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("scale", [1e-9, 1e-20, 1e6])
def test_saliency_scale_changes_nothing(scale: float) -> None:
    """A task saliency of 1e-9 (the segmentation side on DDTI) behaves like one of 1: both terms and their gradients
    are unchanged (without the per-sample normalisation TSR saw P_cls = 1 everywhere and CSA's seg side vanished
    under F.normalize's eps)."""
    g = torch.Generator().manual_seed(3)
    seg = torch.randn(4, 3, 5, generator=g, requires_grad=True)
    cls = torch.randn(4, 3, 5, generator=g, requires_grad=True)
    valid = torch.ones(4, dtype=torch.bool)
    for term in (lambda a, b: tsr_loss([a, b], valid), lambda a, b: csa_loss([a, b], valid, 1.0)):
        ref = term(seg, cls)
        ref_grads = torch.autograd.grad(ref, (seg, cls))
        scaled_seg = (seg.detach() * scale).requires_grad_()
        got = term(scaled_seg, cls)
        got_grads = torch.autograd.grad(got, (scaled_seg, cls))
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got_grads[0] * scale, ref_grads[0], rtol=1e-4, atol=1e-6)  # chain rule: 1/scale
        torch.testing.assert_close(got_grads[1], ref_grads[1], rtol=1e-4, atol=1e-6)


def test_regulariser_share_is_bounded_and_the_unbounded_share_logged() -> None:
    torch.manual_seed(4)
    model = TinyNet().double()
    batch = make_batch(b=5, seed=9, dtype=torch.float64)
    free = get_strategy("repmtl", lambda_tsr=50.0, lambda_csa=50.0, max_share=None).step(model, batch, simple_loss, 0)
    assert free.extra["penalty_share"] == pytest.approx(free.extra["penalty_share_raw"]) and free.extra["penalty_share"] > 0.5
    model.zero_grad()
    bounded = get_strategy("repmtl", lambda_tsr=50.0, lambda_csa=50.0, max_share=0.5).step(model, batch, simple_loss, 0)
    assert bounded.extra["penalty_share"] == pytest.approx(0.5)
    assert bounded.extra["penalty_share_raw"] == pytest.approx(free.extra["penalty_share_raw"])


def _csa_numpy(sal: list[np.ndarray], temperature: float) -> float:
    """The issue's equations, written out per sample with numpy."""
    n_batch = sal[0].shape[0]
    def unit(x: np.ndarray) -> np.ndarray:
        unit_vector: np.ndarray = x.ravel() / np.linalg.norm(x.ravel())
        return unit_vector
    sal = [s / np.sqrt((s.reshape(n_batch, -1) ** 2).mean(1)).reshape(-1, 1, 1) for s in sal]  # unit RMS per sample
    anchors = []
    for b in range(n_batch):
        a = np.stack([s[b].mean(1) for s in sal], axis=1)  # C x T
        anchors.append(unit(a @ a.T))
    total = 0.0
    for b in range(n_batch):
        neg = sum(np.exp(anchors[b] @ anchors[k] / temperature) for k in range(n_batch) if k != b)
        for s in sal:
            pos = np.exp(anchors[b] @ unit(s[b] @ s[b].T) / temperature)
            total += -np.log(pos / neg)
    return float(total / n_batch)


def test_csa_two_samples_by_hand() -> None:
    rng = np.random.default_rng(0)
    sal = [rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))]  # T = 2 tasks, B = 2, C = 3, HW = 4
    for temperature in (1.0, 0.1):
        got = float(csa_loss([torch.tensor(s) for s in sal], torch.tensor([True, True]), temperature))
        assert got == pytest.approx(_csa_numpy(sal, temperature), rel=1e-10)


def test_csa_needs_two_valid_samples() -> None:
    s = [torch.randn(3, 2, 4), torch.randn(3, 2, 4)]
    assert float(csa_loss(s, torch.tensor([True, False, False]), 1.0)) == 0.0
    full = float(csa_loss(s, torch.tensor([True, True, True]), 1.0))
    two = float(csa_loss([x[:2] for x in s], torch.tensor([True, True]), 1.0))
    assert float(csa_loss(s, torch.tensor([True, True, False]), 1.0)) == pytest.approx(two)
    assert full != pytest.approx(two)


def test_pooled_classification_saliency_gets_non_zero_gradients() -> None:
    """A pooled classifier gives a saliency constant over space per channel; the old CSA was exactly log B with zero
    gradient there. Both published terms now have a gradient w.r.t. both saliencies, and CSA is not log B."""
    g = torch.Generator().manual_seed(1)
    seg = torch.randn(4, 3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    per_channel = torch.randn(4, 3, 1, generator=g, dtype=torch.float64, requires_grad=True)
    cls = per_channel.expand(4, 3, 5)
    valid = torch.ones(4, dtype=torch.bool)
    csa = csa_loss([seg, cls], valid, 1.0)
    assert float(csa.detach()) != pytest.approx(math.log(4))
    for term in (csa, tsr_loss([seg, cls], valid)):
        grads = torch.autograd.grad(term, (seg, per_channel), retain_graph=True)
        assert all(float(gr.abs().sum()) > 0 for gr in grads)


def _naive(model: TinyNet, batch: dict[str, Any], strategy: Strategy) -> None:
    assert isinstance(strategy, RepMTL)
    out = model(batch["image"])
    losses = simple_loss(out, batch)
    z = out.features["bottleneck"]
    g: list[torch.Tensor | None] = [torch.autograd.grad(loss, z, create_graph=True, retain_graph=True)[0]
         for loss in (losses["seg"], losses["cls"] + losses["rad"])]
    valid = batch["has_mask"] & ((batch["label"] >= 0) | batch["has_radiomics"])
    regularisers = strategy.regularisers(g, valid)
    assert regularisers is not None  # both tasks reach z
    tsr, csa = regularisers
    o = strategy.options
    (sum(losses.values()) + o.lambda_tsr * tsr + o.lambda_csa * csa).backward()


def test_cut_gradients_equal_naive_second_order_autograd() -> None:
    torch.manual_seed(4)
    model = TinyNet().double()
    batch = make_batch(b=5, seed=9, dtype=torch.float64)
    batch["has_mask"][4] = False
    strategy = get_strategy("repmtl", lambda_tsr=0.7, lambda_csa=1.5, max_share=None)
    report = strategy.step(model, batch, simple_loss, 0)
    got = [grad_of(p).clone() for p in model.parameters()]
    model.zero_grad()
    _naive(model, batch, strategy)
    for g, w in zip(got, (grad_of(p) for p in model.parameters()), strict=True):
        torch.testing.assert_close(g, w)
    assert 0.0 <= report.extra["tsr"] <= math.log(2) and math.isfinite(report.extra["csa"])
    assert report.extra["penalty_share"] > 0


def test_regulariser_changes_the_update() -> None:
    torch.manual_seed(4)
    model = TinyNet().double()
    batch = make_batch(b=5, seed=9, dtype=torch.float64)
    get_strategy("repmtl", lambda_tsr=1.0, lambda_csa=1.0).step(model, batch, simple_loss, 0)
    reg = [grad_of(p).clone() for p in model.parameters()]
    model.zero_grad()
    get_strategy("sum").step(model, batch, simple_loss, 0)
    assert any(not torch.allclose(a, b) for a, b in zip(reg, (grad_of(p) for p in model.parameters()), strict=True))


def test_zero_saliency_samples_are_safe() -> None:
    torch.manual_seed(0)
    model = TinyNet()
    report = get_strategy("repmtl").step(model, make_batch(masks=False), simple_loss, 0)
    assert report.extra["tsr"] == 0.0 and report.extra["csa"] == 0.0
    assert all(torch.isfinite(grad_of(p)).all() for p in model.parameters())
