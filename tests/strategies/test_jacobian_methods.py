"""PCGrad, CAGrad, Nash-MTL: the update equals what torchjd's aggregator defines on the task Jacobian."""

from __future__ import annotations

import pytest
import torch
from torchjd.aggregation import CAGrad, NashMTL, PCGrad

from rlar.errors import ConfigError
from rlar.strategies import get_strategy

from ._tiny import TinyNet, make_batch, simple_loss

AGGREGATORS = {
    "pcgrad": (lambda: PCGrad(), {}),
    "cagrad": (lambda: CAGrad(c=0.25), {"c": 0.25}),
    "nashmtl": (lambda: NashMTL(n_tasks=2, max_norm=1.0), {"max_norm": 1.0}),
}


@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("name", sorted(AGGREGATORS))
@pytest.mark.filterwarnings("ignore:You are solving a parameterized problem")
def test_update_matches_aggregator(name: str, batchnorm: bool) -> None:
    torch.manual_seed(3)
    model = TinyNet(batchnorm=batchnorm).double()
    batch = make_batch(b=4, seed=7, dtype=torch.float64)
    make, options = AGGREGATORS[name]
    report = get_strategy(name, **options).step(model, batch, simple_loss, 0)
    got = {id(p): p.grad.clone() for p in model.parameters()}

    # Reference: plain forward, Jacobian of (L_seg, L_cls + L_rad) w.r.t. the shared (trunk) parameters.
    head_ids = {id(p) for p in model.head_parameters("bottleneck")}
    trunk = [p for p in model.parameters() if id(p) not in head_ids]
    heads = [p for p in model.parameters() if id(p) in head_ids]
    losses = simple_loss(model(batch["image"]), batch)
    task_losses = [losses["seg"], losses["cls"] + losses["rad"]]
    rows, head_sum = [], [torch.zeros_like(p) for p in heads]
    for loss in task_losses:
        grads = torch.autograd.grad(loss, trunk + heads, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([g.flatten() for g in grads[: len(trunk)]]))
        head_sum = [s + (g if g is not None else 0) for s, g in zip(head_sum, grads[len(trunk):], strict=True)]
    jacobian = torch.stack(rows)
    expected = make()(jacobian)
    if name != "nashmtl":  # (Nash-MTL's first step may legitimately return weights (1, 1))
        assert not torch.allclose(expected, jacobian.sum(0))  # the aggregation really differs from the plain sum
    offset = 0
    for p in trunk:
        n = p.numel()
        torch.testing.assert_close(got[id(p)], expected[offset: offset + n].view_as(p))
        offset += n
    for p, s in zip(heads, head_sum, strict=True):  # task-specific parameters: their own task's gradient
        torch.testing.assert_close(got[id(p)], s)
    assert -1.0 <= report.cosine <= 1.0


def test_cut_below_a_shared_head_layer_is_refused() -> None:
    # Cutting at enc1 puts the shared bottleneck conv on the head side: the aggregation would skip it.
    with pytest.raises(ConfigError, match="last shared layer"):
        get_strategy("pcgrad", representation="enc1").step(TinyNet(), make_batch(), simple_loss, 0)
