"""Registry, options, and the behaviour every strategy shares: it trains, reports a cosine, fills .grad."""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import pytest
import torch

from rlar.errors import ConfigError
from rlar.strategies import STRATEGIES, StepReport, get_strategy, validate_strategy_options
from rlar.strategies.uncertainty import UncertaintyWeighting

from ._tiny import TinyNet, grad_of, make_batch, simple_loss


def test_registry_names_match_contract() -> None:
    assert set(STRATEGIES) == {"sum", "rlar", "repmtl", "pcgrad", "cagrad", "nashmtl", "uncertainty"}
    for name, cls in STRATEGIES.items():
        assert cls.name == name
        assert get_strategy(name).name == name
        assert validate_strategy_options(name, {}) == cls.Options()  # every option has its default in the model


def test_unknown_name_and_option_are_named() -> None:
    with pytest.raises(ConfigError, match="unknown strategy 'adam'") as err:
        get_strategy("adam")
    assert err.value.key == "strategy.name"
    with pytest.raises(ConfigError) as err:
        get_strategy("rlar", taux=0.2)
    assert err.value.key == "strategy.options.rlar.taux" and "tau" in err.value.reason
    with pytest.raises(ConfigError) as err:
        validate_strategy_options("rlar", {"tau": 1.5})
    assert err.value.key == "strategy.options.rlar.tau"
    with pytest.raises(ConfigError) as err:
        validate_strategy_options("cagrad", {"rescale": 3})
    assert err.value.key == "strategy.options.cagrad.rescale"
    with pytest.raises(ConfigError) as err:
        validate_strategy_options("sum", {"weights": {"rad": -1}})
    assert err.value.key == "strategy.options.sum.weights.rad"
    with pytest.raises(ConfigError) as err:
        validate_strategy_options("nope", {})
    assert err.value.key == "strategy.name"
    with pytest.raises(ConfigError, match="tasks.seg"):
        get_strategy("sum", tasks={"seg": "seg"})  # type: ignore[dict-item]  # the wrong type is the test
    with pytest.raises(ConfigError, match="already belongs"):
        get_strategy("sum", tasks={"seg": ["seg"], "cls": ["seg"]})


def test_one_spelling_per_weight() -> None:
    assert validate_strategy_options("rlar", {"lambda_rlar": 0.7}).model_dump()["lambda_rlar"] == 0.7
    with pytest.raises(ConfigError):  # Rep-MTL has no shared 'lambda'
        validate_strategy_options("repmtl", {"lambda": 1.0})
    with pytest.raises(ConfigError) as err:  # the old spelling is refused, naming the key and the right one
        validate_strategy_options("rlar", {"lambda": 0.7})
    assert err.value.key == "strategy.options.rlar.lambda" and "lambda_rlar" in err.value.reason


def test_unknown_representation_is_named(tiny: TinyNet) -> None:
    with pytest.raises(ConfigError, match="'enc9'"):
        get_strategy("sum", representation="enc9").step(tiny, make_batch(), simple_loss, 0)


@pytest.mark.parametrize("name", list(STRATEGIES))
@pytest.mark.filterwarnings("ignore:You are solving a parameterized problem")  # cvxpy, inside torchjd's NashMTL
def test_every_strategy_trains_and_reports(name: str) -> None:
    torch.manual_seed(0)
    model = TinyNet()
    strategy = get_strategy(name)
    opt = torch.optim.SGD([*model.parameters(), *strategy.parameters()], lr=0.05)
    batch = make_batch(b=6, seed=1)
    firsts: float | None = None
    lasts: float | None = None
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
    assert lasts is not None and firsts is not None
    assert lasts < firsts - 1e-3, f"{name}: loss {firsts:.4f} -> {lasts:.4f}"


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_single_task_model_has_no_cosine(name: str) -> None:
    torch.manual_seed(0)
    model = TinyNet(cls=False)
    report = get_strategy(name).step(model, make_batch(), simple_loss, 3)
    assert report.cosine is None
    assert set(report.losses) == {"seg"}
    assert model.dec is not None and all(p.grad is not None for p in model.dec.parameters())


def test_cosine_is_nan_not_crash_when_no_sample_has_both_tasks(tiny: TinyNet) -> None:
    report = get_strategy("sum").step(tiny, make_batch(masks=False), simple_loss, 0)
    assert report.cosine is not None and math.isnan(report.cosine)
    assert all(torch.isfinite(grad_of(p)).all() for p in tiny.parameters())


def test_sum_equals_plain_backward(tiny: TinyNet) -> None:
    batch = make_batch(seed=3)
    get_strategy("sum", weights={"rad": 0.5}).step(tiny, batch, simple_loss, 0)
    cut_grads = [grad_of(p).clone() for p in tiny.parameters()]
    tiny.zero_grad()
    losses = simple_loss(tiny(batch["image"]), batch)
    (losses["seg"] + losses["cls"] + 0.5 * losses["rad"]).backward()
    for got, want in zip(cut_grads, (grad_of(p) for p in tiny.parameters()), strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.filterwarnings("ignore:You are solving a parameterized problem")  # cvxpy, inside torchjd's NashMTL
def test_cosine_matches_direct_per_sample_gradients(tiny: TinyNet) -> None:
    """Contract C2: L_seg vs L_cls alone (never L_rad), over the samples with a mask AND a known label."""
    batch = make_batch(b=6, seed=4)
    batch["label"][0] = -1  # unknown level: excluded, although L_rad still reaches it
    batch["has_mask"][1] = False
    out = tiny(batch["image"])
    losses = simple_loss(out, batch)
    z = out.features["bottleneck"]
    ga = torch.autograd.grad(losses["seg"], z, retain_graph=True)[0].flatten(1)
    gb = torch.autograd.grad(losses["cls"], z)[0].flatten(1)
    expected = torch.nn.functional.cosine_similarity(ga, gb, dim=1)[2:].mean()
    for name in STRATEGIES:
        tiny.zero_grad()
        report = get_strategy(name).step(tiny, batch, simple_loss, 0)
        assert report.cosine == pytest.approx(float(expected), abs=1e-5), name


def test_uncertainty_log_variance_gradient_is_analytic(tiny: TinyNet) -> None:
    strategy = get_strategy("uncertainty", init=0.3)
    assert isinstance(strategy, UncertaintyWeighting)
    report = strategy.step(tiny, make_batch(), simple_loss, 0)
    s = 0.3
    for task, keys in {"seg": ["seg"], "cls": ["cls", "rad"]}.items():
        loss = sum(report.losses[k] for k in keys)
        assert float(grad_of(strategy.log_vars[task])) == pytest.approx(-math.exp(-s) * loss + 1.0, rel=1e-5)
    assert report.extra["weight_seg"] == pytest.approx(math.exp(-s))


TOY_STRATEGY = """
from pydantic import Field

from rlar.strategies._cut import CutPass, plain_backward
from rlar.strategies.base import Contribution, Strategy, StrategyOptions


class ScaledOptions(StrategyOptions):
    scale: float = Field(0.5, gt=0)


class Scaled(Strategy):
    name = "scaled"
    Options = ScaledOptions

    def backward(self, cp: CutPass, step: int) -> Contribution:
        weights = {k: self.options.scale for k in cp.losses}
        plain_backward(cp, weights)
        return Contribution(weights=weights)
"""


def test_toy_strategy_is_one_file_plus_one_registry_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "toy_scaled_strategy.py").write_text(TOY_STRATEGY)  # the one file
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("toy_scaled_strategy")
    monkeypatch.setitem(STRATEGIES, "scaled", module.Scaled)  # the one registry line
    from rlar.training.config import strategy_choices

    assert "scaled" in strategy_choices()  # the config validation reads the same registry
    assert validate_strategy_options("scaled", {"scale": 0.25}).model_dump()["scale"] == 0.25
    with pytest.raises(ConfigError) as err:
        validate_strategy_options("scaled", {"scale": 0})
    assert err.value.key == "strategy.options.scaled.scale"

    torch.manual_seed(0)
    model = TinyNet()
    batch = make_batch(seed=2)
    report = get_strategy("scaled", scale=0.25).step(model, batch, simple_loss, 0)
    scaled = [grad_of(p).clone() for p in model.parameters()]
    model.zero_grad()
    plain = get_strategy("sum").step(model, batch, simple_loss, 0)
    for got, full in zip(scaled, (grad_of(p) for p in model.parameters()), strict=True):
        torch.testing.assert_close(got, 0.25 * full)
    assert report.total == pytest.approx(0.25 * sum(report.losses.values()))  # built by the base class
    assert report.cosine == pytest.approx(plain.cosine)  # the comparable cosine comes for free


def test_every_registered_strategy_has_its_docs_row() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "strategies.md").read_text()
    for name in STRATEGIES:
        assert f"| `{name}` |" in text, f"docs/strategies.md has no table row for '{name}'"
