"""PCGrad, CAGrad, Nash-MTL: the update equals what the authors' methods define on the task Jacobian (torchjd's
aggregators, CAGrad's official rescale, Nash-MTL's alpha on the heads too), with hand-computed two-task cases."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torchjd.aggregation import Aggregator, CAGrad, NashMTL, PCGrad

from rlar.errors import ConfigError
from rlar.strategies import get_strategy
from rlar.strategies._jacobian import JacobianOptions
from rlar.strategies.cagrad import CAGrad as CAGradStrategy
from rlar.strategies.nashmtl import NashMTL as NashStrategy

from ._tiny import TinyNet, grad_of, make_batch, simple_loss

# name -> (reference aggregator, strategy options, scale of the reference's trunk update)
AGGREGATORS: dict[str, tuple[Callable[[], Aggregator], dict[str, Any], float]] = {
    "pcgrad": (lambda: PCGrad(), {}, 1.0),  # default chunk 'auto': one row at a time on a CPU
    "pcgrad-vmap": (lambda: PCGrad(), {"parallel_chunk_size": None}, 1.0),  # every row in one vmapped backward
    "cagrad": (lambda: CAGrad(c=0.25), {"c": 0.25}, 1 / (1 + 0.25**2)),  # official default rescale=1
    "cagrad-rescale0": (lambda: CAGrad(c=0.25), {"c": 0.25, "rescale": 0}, 1.0),
    "nashmtl": (lambda: NashMTL(n_tasks=2, max_norm=1.0), {"max_norm": 1.0}, 1.0),
}


@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("variant", sorted(AGGREGATORS))
@pytest.mark.filterwarnings("ignore:You are solving a parameterized problem")
def test_update_matches_aggregator(variant: str, batchnorm: bool) -> None:
    torch.manual_seed(3)
    model = TinyNet(batchnorm=batchnorm).double()
    batch = make_batch(b=4, seed=7, dtype=torch.float64)
    make, options, scale = AGGREGATORS[variant]
    name = variant.split("-")[0]
    report = get_strategy(name, **options).step(model, batch, simple_loss, 0)
    got = {id(p): grad_of(p).clone() for p in model.parameters()}

    # Reference: plain forward, Jacobian of (L_seg, L_cls + L_rad) w.r.t. the shared (trunk) parameters.
    head_ids = {id(p) for p in model.head_parameters("bottleneck")}
    trunk = [p for p in model.parameters() if id(p) not in head_ids]
    heads = [p for p in model.parameters() if id(p) in head_ids]
    losses = simple_loss(model(batch["image"]), batch)
    task_losses = [losses["seg"], losses["cls"] + losses["rad"]]
    rows, head_rows = [], []
    for loss in task_losses:
        grads = torch.autograd.grad(loss, trunk + heads, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([g.flatten() for g in grads[: len(trunk)]]))
        head_rows.append([g if g is not None else torch.zeros_like(p) for g, p in zip(grads[len(trunk):], heads,
                                                                                       strict=True)])
    jacobian = torch.stack(rows)
    aggregator = make()
    expected = aggregator(jacobian) * scale
    if name != "nashmtl":  # (Nash-MTL's first step may legitimately return weights (1, 1))
        assert not torch.allclose(expected, jacobian.sum(0))  # the aggregation really differs from the plain sum
    offset = 0
    for p in trunk:
        n = p.numel()
        torch.testing.assert_close(got[id(p)], expected[offset: offset + n].view_as(p))
        offset += n
    # Task-specific parameters: their task's gradient (PCGrad, CAGrad), times Nash-MTL's unclipped alpha_t.
    alpha = [1.0, 1.0]
    if name == "nashmtl":
        assert isinstance(aggregator, NashMTL)
        alpha = [float(a) for a in aggregator.weighting.prvs_alpha]
    for i, p in enumerate(heads):
        torch.testing.assert_close(got[id(p)], alpha[0] * head_rows[0][i] + alpha[1] * head_rows[1][i])
    assert report.cosine is not None and -1.0 <= report.cosine <= 1.0


def test_auto_chunk_is_rowwise_on_cpu_and_vmapped_elsewhere() -> None:
    options = get_strategy("pcgrad").options
    assert isinstance(options, JacobianOptions)
    assert options.parallel_chunk_size == "auto"
    assert options.chunk_size_on(torch.device("cpu")) == 1
    assert options.chunk_size_on(torch.device("cuda")) is None
    cagrad_options = get_strategy("cagrad", parallel_chunk_size=2).options
    assert isinstance(cagrad_options, JacobianOptions)
    assert cagrad_options.chunk_size_on(torch.device("cpu")) == 2
    with pytest.raises(ConfigError):
        get_strategy("nashmtl", parallel_chunk_size="fast")


@pytest.mark.parametrize(("rescale", "factor"), [(0, 1.5), (1, 1.5 / 1.25), (2, 1.0)])
def test_cagrad_rescale_hand_computed(rescale: int, factor: float) -> None:
    """g1 = e1, g2 = e2: by symmetry w = (1/2, 1/2), g_w = g0 = (1/2, 1/2), so CAGrad's g = g0 + c g0 = (1 + c) g0;
    with c = 0.5 the official rescale divides by 1 + c^2 = 1.25 (1), by 1 + c = 1.5 (2) or not at all (0)."""
    strategy = get_strategy("cagrad", c=0.5, rescale=rescale)
    assert isinstance(strategy, CAGradStrategy)
    update = strategy.make_aggregator(2)(torch.eye(2, dtype=torch.float64))
    torch.testing.assert_close(update, torch.tensor([0.5, 0.5], dtype=torch.float64) * factor, atol=1e-6, rtol=1e-6)


@pytest.mark.filterwarnings("ignore:You are solving a parameterized problem")
def test_nash_alpha_hand_computed() -> None:
    """Orthogonal g1 = (1, 0), g2 = (0, 2): the bargaining condition G^T G alpha = 1 / alpha (the official code
    normalises G^T G by its norm N in the solver and multiplies alpha by N in the constraint, which cancels) gives
    alpha_i = 1 / ||g_i|| = (1, 1/2), and the update alpha @ J = (1, 1)."""
    strategy = get_strategy("nashmtl", max_norm=0.0)
    assert isinstance(strategy, NashStrategy)
    aggregator = strategy.aggregator(2)
    jac = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    update = aggregator(jac)
    assert strategy.head_weights(update) == pytest.approx([1.0, 0.5], rel=1e-3)
    torch.testing.assert_close(update, torch.tensor([1.0, 1.0], dtype=torch.float64), rtol=1e-3, atol=1e-3)
    assert math.isfinite(float(update.sum()))


def test_cut_below_a_shared_head_layer_is_refused() -> None:
    # Cutting at enc1 puts the shared bottleneck conv on the head side: the aggregation would skip it.
    with pytest.raises(ConfigError, match="last shared layer"):
        get_strategy("pcgrad", representation="enc1").step(TinyNet(), make_batch(), simple_loss, 0)
