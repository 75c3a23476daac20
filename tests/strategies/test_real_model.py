"""The strategies on the project's real network (rlar.models.build_model) and loss (rlar.losses.MultitaskLoss)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from rlar.losses import MultitaskLoss
from rlar.models import build_model
from rlar.strategies import STRATEGIES, get_strategy

from ._reference import naive_rlar_step
from ._tiny import make_batch


@pytest.fixture
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("multitask", "compact", num_classes=3).double()


def _grads(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


def test_rlar_cut_equals_naive_on_real_model(net: torch.nn.Module) -> None:
    batch = make_batch(b=3, size=32, seed=1, dtype=torch.float64)
    loss_fn = MultitaskLoss()
    options: dict[str, Any] = {"lambda_rlar": 10.0, "layers": ["enc4", "bottleneck"], "penalty_through_heads": True,
                               "tau": -0.5}
    strategy = get_strategy("rlar", **options)
    report = strategy.step(net, batch, loss_fn, 0)
    got = _grads(net)
    net.zero_grad()
    naive_penalty = naive_rlar_step(strategy, net, batch, loss_fn, 0)
    for g, w in zip(got, _grads(net), strict=True):
        torch.testing.assert_close(g, w)
    assert report.extra["penalty"] == pytest.approx(naive_penalty) and report.extra["penalty"] > 0


def test_sum_equals_plain_backward_on_real_model(net: torch.nn.Module) -> None:
    batch = make_batch(b=3, size=32, seed=2, dtype=torch.float64)
    loss_fn = MultitaskLoss()
    report = get_strategy("sum").step(net, batch, loss_fn, 0)
    got = _grads(net)
    net.zero_grad()
    sum(loss_fn(net(batch["image"]), batch).values()).backward()
    for g, w in zip(got, _grads(net), strict=True):
        torch.testing.assert_close(g, w)
    assert report.cosine is not None and -1.0 <= report.cosine <= 1.0


@pytest.mark.parametrize("name", [n for n in STRATEGIES if n not in ("sum", "rlar")])
@pytest.mark.filterwarnings("ignore:You are solving a parameterized problem")
def test_other_strategies_run_on_real_model(name: str, net: torch.nn.Module) -> None:
    net = net.float()
    batch = make_batch(b=3, size=32, seed=3)
    report = get_strategy(name).step(net, batch, MultitaskLoss(), 0)
    assert report.cosine is not None and -1.0 <= report.cosine <= 1.0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
