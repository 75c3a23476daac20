"""The cut forward: gradients through (boundary partials + head params, then one trunk backward) equal a plain
``loss.backward()``, and the bookkeeping (leaves, head/trunk parameter split) is right."""

from __future__ import annotations

import pytest
import torch

from rlar.losses import MultitaskLoss
from rlar.models import RlarNet, build_model


def make_batch(b: int = 4, size: int = 32) -> dict:
    g = torch.Generator().manual_seed(1)
    return {
        "image": torch.rand(b, 1, size, size, generator=g),
        "mask": (torch.rand(b, 1, size, size, generator=g) > 0.6).float(),
        "has_mask": torch.tensor([True, False, True, True][:b]),
        "label": torch.tensor([2, -1, 0, 5][:b]),
        "radiomics": torch.randn(b, 13, generator=g),
        "has_radiomics": torch.tensor([True, False, True, False][:b]),
    }


def plain_grads(model: RlarNet, batch: dict, loss_fn: MultitaskLoss) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(123)  # same dropout masks in both procedures
    out = model(batch["image"])
    sum(loss_fn(out, batch).values()).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def cut_grads(model: RlarNet, batch: dict, loss_fn: MultitaskLoss, cut_at: str) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(123)
    out = model(batch["image"], cut_at=cut_at)
    loss = sum(loss_fn(out, batch).values())
    trunk = [t for t, _ in out.cut]
    leaves = [leaf for _, leaf in out.cut]
    head = model.head_parameters(cut_at)
    grads = torch.autograd.grad(loss, leaves + head)
    # the heads' backward alone must not have touched any trunk parameter
    assert all(p.grad is None for p in model.trunk_parameters(cut_at))
    for p, g in zip(head, grads[len(leaves) :]):
        p.grad = g
    torch.autograd.backward(trunk, grads[: len(leaves)])
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


CASES = [
    ("multitask", {}, "bottleneck", 5),  # z + 4 skips
    ("multitask", {}, "enc2", 2),  # z + enc1 skip
    ("multitask", {"cls_levels": ("enc3", "bottleneck"), "cls_dropout": 0.3}, "enc4", 4),
    ("multitask", {"cls_pooling": "nodule", "cls_levels": ("enc3", "bottleneck")}, "enc4", 4),
    ("segmentation", {}, "enc3", 3),
    ("classification", {}, "enc2", 1),  # no decoder: earlier maps are not read by the heads
    ("classification", {"cls_levels": ("enc1", "bottleneck")}, "enc3", 2),
]


@pytest.mark.parametrize(("arch", "kw", "cut_at", "n_leaves"), CASES)
def test_cut_gradients_equal_plain_backward(arch: str, kw: dict, cut_at: str, n_leaves: int) -> None:
    torch.manual_seed(0)
    model = build_model(arch, num_classes=6, **kw).double()
    batch = {k: v.double() if v.is_floating_point() else v for k, v in make_batch().items()}
    loss_fn = MultitaskLoss(rad_weight=0.5)
    ref = plain_grads(model, batch, loss_fn)
    got = cut_grads(model, batch, loss_fn, cut_at)
    assert set(got) == set(ref) == {n for n, _ in model.named_parameters()}
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-9, atol=1e-11, msg=name)
    out = model(batch["image"], cut_at=cut_at)
    assert len(out.cut) == n_leaves
    assert out.cut_layer == cut_at
    trunk_z, leaf_z = out.cut[0]
    assert out.z() is leaf_z and out.features[cut_at] is leaf_z
    assert leaf_z.is_leaf and leaf_z.requires_grad and not trunk_z.is_leaf
    assert torch.equal(trunk_z, leaf_z)


def test_cut_gives_per_task_boundary_gradients() -> None:
    """What RLAR needs: grad of each task loss w.r.t. z from the heads' backward, one trunk backward after."""
    torch.manual_seed(0)
    model = build_model("multitask")
    batch = make_batch()
    out = model(batch["image"], cut_at="bottleneck")
    losses = MultitaskLoss()(out, batch)
    g_seg = torch.autograd.grad(losses["seg"], out.z(), retain_graph=True)[0]
    g_cls = torch.autograd.grad(losses["cls"] + losses["rad"], out.z(), retain_graph=True)[0]
    assert g_seg.shape == g_cls.shape == out.z().shape
    assert g_seg.abs().sum() > 0 and g_cls.abs().sum() > 0
    cos = torch.nn.functional.cosine_similarity(g_seg.flatten(1), g_cls.flatten(1), dim=1)
    assert cos.shape == (4,) and torch.all(cos.abs() <= 1 + 1e-6)


@pytest.mark.parametrize("cut_at", ["enc1", "enc3", "bottleneck"])
def test_head_and_trunk_parameters_partition(cut_at: str) -> None:
    model = build_model("multitask")
    head = {id(p) for p in model.head_parameters(cut_at)}
    trunk = {id(p) for p in model.trunk_parameters(cut_at)}
    assert head.isdisjoint(trunk)
    assert head | trunk == {id(p) for p in model.parameters()}
    k = model.representation_names.index(cut_at)
    expected_trunk = {id(p) for i in range(k + 1) for p in model.encoder.stage_parameters(i)}
    assert trunk == expected_trunk
    if cut_at == "bottleneck":
        assert trunk == {id(p) for p in model.encoder.parameters()}


def test_cut_on_efficientnet_mid_level() -> None:
    """Library backbones are split into stages too: the cut works inside a MONAI EfficientNet."""
    torch.manual_seed(0)
    model = build_model("multitask", backbone="efficientnet-b0").eval()  # eval: drop-connect off
    batch = make_batch(2, 64)
    loss_fn = MultitaskLoss()
    ref = plain_grads(model, batch, loss_fn)
    got = cut_grads(model, batch, loss_fn, "enc3")
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-4, atol=1e-6, msg=name)
