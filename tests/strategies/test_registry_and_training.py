"""Registry, options, and the behaviour every strategy shares: it trains, reports a cosine, fills .grad."""

from __future__ import annotations

import math

import pytest
import torch

from rlar.errors import ConfigError
from rlar.strategies import STRATEGY_NAMES, StepReport, get_strategy

from ._tiny import TinyNet, make_batch, simple_loss


def test_registry_names_match_contract() -> None:
    assert set(STRATEGY_NAMES) == {"sum", "rlar", "repmtl", "pcgrad", "cagrad", "nashmtl", "uncertainty"}
    for name in STRATEGY_NAMES:
        assert get_strategy(name).name == name


def test_unknown_name_and_option_are_named() -> None:
    with pytest.raises(ConfigError, match="unknown strategy 'adam'"):
        get_strategy("adam")
    with pytest.raises(ConfigError, match="strategy.taux"):
        get_strategy("rlar", taux=0.2)
    with pytest.raises(ConfigError, match="tau"):
        get_strategy("rlar", tau=1.5)
    with pytest.raises(ConfigError, match="tasks.seg"):
        get_strategy("sum", tasks={"seg": "seg"})
    with pytest.raises(ConfigError, match="already belongs"):
        get_strategy("sum", tasks={"seg": ["seg"], "cls": ["seg"]})


def test_lambda_alias() -> None:
    assert get_strategy("rlar", **{"lambda": 0.7}).lambda_rlar == 0.7


def test_unknown_representation_is_named(tiny: TinyNet) -> None:
    with pytest.raises(ConfigError, match="'enc9'"):
        get_strategy("sum", representation="enc9").step(tiny, make_batch(), simple_loss, 0)


@pytest.mark.parametrize("name", STRATEGY_NAMES)
@pytest.mark.filterwarnings("ignore:You are solving a parameterized problem")  # cvxpy, inside torchjd's NashMTL
def test_every_strategy_trains_and_reports(name: str) -> None:
    torch.manual_seed(0)
    model = TinyNet()
    strategy = get_strategy(name)
    opt = torch.optim.SGD([*model.parameters(), *strategy.parameters()], lr=0.05)
    batch = make_batch(b=6, seed=1)
    firsts, lasts = None, None
    for step in range(8):
        opt.zero_grad()
        report = strategy.step(model, batch, simple_loss, step)
        assert isinstance(report, StepReport)
        assert set(report.losses) == {"seg", "cls", "rad"}
        assert report.cosine is not None and -1.0 - 1e-6 <= report.cosine <= 1.0 + 1e-6
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        plain = sum(report.losses.values())
        firsts = plain if firsts is None else firsts
        lasts = plain
        opt.step()
    assert lasts < firsts - 1e-3, f"{name}: loss {firsts:.4f} -> {lasts:.4f}"


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_single_task_model_has_no_cosine(name: str) -> None:
    torch.manual_seed(0)
    model = TinyNet(cls=False)
    report = get_strategy(name).step(model, make_batch(), simple_loss, 3)
    assert report.cosine is None
    assert set(report.losses) == {"seg"}
    assert all(p.grad is not None for p in model.dec.parameters())


def test_cosine_is_nan_not_crash_when_no_sample_has_both_tasks(tiny: TinyNet) -> None:
    report = get_strategy("sum").step(tiny, make_batch(masks=False), simple_loss, 0)
    assert math.isnan(report.cosine)
    assert all(torch.isfinite(p.grad).all() for p in tiny.parameters())


def test_sum_equals_plain_backward(tiny: TinyNet) -> None:
    batch = make_batch(seed=3)
    get_strategy("sum", weights={"rad": 0.5}).step(tiny, batch, simple_loss, 0)
    cut_grads = [p.grad.clone() for p in tiny.parameters()]
    tiny.zero_grad()
    losses = simple_loss(tiny(batch["image"]), batch)
    (losses["seg"] + losses["cls"] + 0.5 * losses["rad"]).backward()
    for got, want in zip(cut_grads, (p.grad for p in tiny.parameters()), strict=True):
        torch.testing.assert_close(got, want)


def test_cosine_matches_direct_per_sample_gradients(tiny: TinyNet) -> None:
    batch = make_batch(seed=4)
    report = get_strategy("sum").step(tiny, batch, simple_loss, 0)
    out = tiny(batch["image"])
    losses = simple_loss(out, batch)
    z = out.features["bottleneck"]
    ga = torch.autograd.grad(losses["seg"], z, retain_graph=True)[0].flatten(1)
    gb = torch.autograd.grad(losses["cls"] + losses["rad"], z)[0].flatten(1)
    expected = torch.nn.functional.cosine_similarity(ga, gb, dim=1).mean()
    assert report.cosine == pytest.approx(float(expected), abs=1e-5)


def test_uncertainty_log_variance_gradient_is_analytic(tiny: TinyNet) -> None:
    strategy = get_strategy("uncertainty", init=0.3)
    report = strategy.step(tiny, make_batch(), simple_loss, 0)
    s = 0.3
    for task, keys in {"seg": ["seg"], "cls": ["cls", "rad"]}.items():
        loss = sum(report.losses[k] for k in keys)
        assert float(strategy.log_vars[task].grad) == pytest.approx(-math.exp(-s) * loss + 1.0, rel=1e-5)
    assert report.extra["weight_seg"] == pytest.approx(math.exp(-s))
