"""Rep-MTL: regulariser values on hand cases, exact gradients (cut vs naive autograd), zero-gradient safety."""

from __future__ import annotations

import math

import pytest
import torch

from rlar.strategies import get_strategy
from rlar.strategies.repmtl import csa_loss, spatial_saliency, tsr_loss

from ._tiny import TinyNet, make_batch, simple_loss


def test_tsr_entropy_extremes() -> None:
    valid = torch.tensor([True])
    equal = torch.ones(1, 4)
    assert float(tsr_loss([equal, equal], valid)) == pytest.approx(1.0)  # uniform over tasks: max entropy
    peaked = torch.tensor([[50.0, 0.0]]), torch.tensor([[0.0, 50.0]])
    assert float(tsr_loss(list(peaked), valid)) == pytest.approx(0.0, abs=1e-12)


def test_csa_is_infonce_with_same_sample_positive() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = 0.5
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 1.0))
    assert float(csa_loss(a, b, torch.tensor([True, True]), t)) == pytest.approx(expected)
    swapped = float(csa_loss(a, b.flip(0), torch.tensor([True, True]), t))
    assert swapped > expected  # misaligned saliency costs more
    assert float(csa_loss(a, b, torch.tensor([True, False]), t)) == 0.0  # no negative pair: no term


def test_spatial_saliency_is_scale_free_and_flags_zero() -> None:
    s = torch.randn(3, 4, 2, 2)
    s[2] = 0
    a1, v1 = spatial_saliency(s)
    a2, _ = spatial_saliency(1e-4 * s)
    torch.testing.assert_close(a1[:2], a2[:2])
    assert v1.tolist() == [True, True, False]


def _naive(model: TinyNet, batch: dict, strategy) -> None:
    out = model(batch["image"])
    losses = simple_loss(out, batch)
    z = out.features["bottleneck"]
    g = [torch.autograd.grad(l, z, create_graph=True, retain_graph=True)[0]
         for l in (losses["seg"], losses["cls"] + losses["rad"])]
    tsr, csa = strategy.regularisers({"seg": g[0], "cls": g[1]})
    (sum(losses.values()) + strategy.lambda_tsr * tsr + strategy.lambda_csa * csa).backward()


def test_cut_gradients_equal_naive_second_order_autograd() -> None:
    torch.manual_seed(4)
    model = TinyNet().double()
    batch = make_batch(b=5, seed=9, dtype=torch.float64)
    strategy = get_strategy("repmtl", lambda_tsr=2.0, lambda_csa=0.5)
    report = strategy.step(model, batch, simple_loss, 0)
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    _naive(model, batch, strategy)
    for g, w in zip(got, (p.grad for p in model.parameters()), strict=True):
        torch.testing.assert_close(g, w)
    assert 0.0 <= report.extra["tsr"] <= 1.0 and report.extra["csa"] > 0


def test_regulariser_changes_the_update() -> None:
    torch.manual_seed(4)
    model = TinyNet().double()
    batch = make_batch(b=5, seed=9, dtype=torch.float64)
    get_strategy("repmtl", lambda_tsr=1.0, lambda_csa=1.0).step(model, batch, simple_loss, 0)
    reg = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    get_strategy("sum").step(model, batch, simple_loss, 0)
    assert any(not torch.allclose(a, b) for a, b in zip(reg, (p.grad for p in model.parameters()), strict=True))


def test_zero_saliency_samples_are_safe() -> None:
    torch.manual_seed(0)
    model = TinyNet()
    report = get_strategy("repmtl").step(model, make_batch(masks=False), simple_loss, 0)
    assert report.extra["tsr"] == 0.0 and report.extra["csa"] == 0.0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
