"""Hand-checked values of the task losses, masking of unknown samples, and graph-connected zeros."""

from __future__ import annotations

import math

import pytest
import torch

from rlar.losses import ClassificationLoss, MultitaskLoss, RadiomicsGuidanceLoss, SegmentationLoss
from rlar.models.output import MultitaskOutput

EPS = 1e-5  # MONAI DiceLoss default smooth_nr / smooth_dr


def manual_dice_bce(logits: torch.Tensor, mask: torch.Tensor) -> float:
    """Per-sample soft Dice (averaged) + pixel-mean BCE, written out from the definitions."""
    dices: list[float] = []
    bces: list[float] = []
    for lg, g in zip(logits.flatten(1).tolist(), mask.flatten(1).tolist()):
        p = [1 / (1 + math.exp(-v)) for v in lg]
        inter = sum(pi * gi for pi, gi in zip(p, g))
        dices.append(1 - (2 * inter + EPS) / (sum(p) + sum(g) + EPS))
        bces += [-(gi * math.log(pi) + (1 - gi) * math.log(1 - pi)) for pi, gi in zip(p, g)]
    return float(sum(dices) / len(dices) + sum(bces) / len(bces))


# ---------------------------------------------------------------- segmentation
def test_seg_loss_literal_value() -> None:
    """Logits 0 (p = 0.5) on an all-foreground 2x2 mask: Dice loss 1 - 4/6 = 1/3, BCE ln 2."""
    loss = SegmentationLoss()(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2), torch.tensor([True]))
    assert loss.item() == pytest.approx(1 / 3 + math.log(2), abs=1e-5)


def test_seg_loss_only_over_samples_with_mask() -> None:
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 1.0]]], [[[5.0, -5.0], [3.0, 3.0]]], [[[-2.0, 0.5], [0.0, 4.0]]]])
    mask = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]], [[[1.0, 1.0], [1.0, 1.0]]], [[[0.0, 0.0], [1.0, 1.0]]]])
    has_mask = torch.tensor([True, False, True])
    loss = SegmentationLoss()(logits, mask, has_mask)
    expected = manual_dice_bce(logits[[0, 2]], mask[[0, 2]])
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # the placeholder mask of a sample without annotation must not matter
    mask2 = mask.clone()
    mask2[1] = 0
    assert SegmentationLoss()(logits, mask2, has_mask).item() == pytest.approx(loss.item(), rel=1e-6)
    # weights mix Dice and BCE
    dice_only = SegmentationLoss(dice_weight=1.0, bce_weight=0.0)(logits, mask, has_mask)
    bce_only = SegmentationLoss(dice_weight=0.0, bce_weight=2.0)(logits, mask, has_mask)
    assert (dice_only + bce_only / 2).item() == pytest.approx(loss.item(), rel=1e-5)


def test_seg_loss_no_mask_is_graph_zero() -> None:
    logits = torch.randn(2, 1, 4, 4, requires_grad=True)
    loss = SegmentationLoss()(logits, torch.ones(2, 1, 4, 4), torch.tensor([False, False]))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert logits.grad is not None and torch.equal(logits.grad, torch.zeros_like(logits))


def test_seg_loss_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"batch\['mask'\]"):
        SegmentationLoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5), torch.tensor([True]))
    with pytest.raises(ValueError, match="dice_weight"):
        SegmentationLoss(dice_weight=0.0, bce_weight=0.0)


# ---------------------------------------------------------------- classification
def test_cls_loss_hand_values_and_ignore() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [-7.0, 9.0, 1.0]])
    labels = torch.tensor([0, 2, -1])
    loss = ClassificationLoss()(logits, labels)
    expected = (math.log(1 + 2 * math.exp(-2)) + math.log(3)) / 2  # third sample (unknown) ignored
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_cls_loss_class_weights() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1, -1])
    loss = ClassificationLoss(class_weights=[1.0, 3.0, 1.0])(logits, labels)
    l0, l1 = math.log(1 + 2 * math.exp(-2)), math.log(math.exp(2) + 2)
    assert loss.item() == pytest.approx((1 * l0 + 3 * l1) / 4, rel=1e-6)


def test_cls_loss_label_smoothing() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    eps = 0.1
    z = math.exp(2) + 2
    nll = [-math.log(math.exp(2) / z), -math.log(1 / z), -math.log(1 / z)]
    expected = (1 - eps) * nll[0] + eps / 3 * sum(nll)
    loss = ClassificationLoss(label_smoothing=eps)(logits, torch.tensor([0]))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_cls_loss_all_unknown_is_graph_zero() -> None:
    logits = torch.randn(3, 4, requires_grad=True)
    loss = ClassificationLoss(class_weights=[1, 2, 3, 4], label_smoothing=0.1)(logits, torch.tensor([-1, -1, -1]))
    assert loss.item() == 0.0 and not torch.isnan(loss)
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.equal(grad, torch.zeros_like(logits))


def test_cls_loss_label_errors() -> None:
    with pytest.raises(ValueError, match=r"holds \[3, 7\]"):
        ClassificationLoss()(torch.zeros(3, 3), torch.tensor([3, 7, 0]))
    with pytest.raises(ValueError, match="class_weights has 2 entries"):
        ClassificationLoss(class_weights=[1.0, 2.0])(torch.zeros(1, 3), torch.tensor([0]))
    with pytest.raises(ValueError, match="non-negative"):
        ClassificationLoss(class_weights=[1.0, -2.0])


# ---------------------------------------------------------------- guidance
def test_rad_loss_hand_value() -> None:
    h = torch.tensor([[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]])
    target = torch.tensor([[0.0, 2.0], [3.0, 0.0], [9.0, 9.0]])
    loss = RadiomicsGuidanceLoss()(h, target, torch.tensor([True, True, False]))
    assert loss.item() == pytest.approx((1 + 0 + 0 + 16) / 4)


def test_rad_loss_none_valid_and_shape_error() -> None:
    h = torch.randn(2, 13, requires_grad=True)
    loss = RadiomicsGuidanceLoss()(h, torch.full((2, 13), float("nan")), torch.tensor([False, False]))
    assert loss.item() == 0.0 and loss.requires_grad
    with pytest.raises(ValueError, match="tirads_dim"):
        RadiomicsGuidanceLoss()(h, torch.zeros(2, 12), torch.tensor([True, True]))


# ---------------------------------------------------------------- multitask
def fake_output(b: int = 3, seg: bool = True, cls: bool = True, rad: bool = True) -> MultitaskOutput:
    g = torch.Generator().manual_seed(0)
    return MultitaskOutput(
        mask_logits=torch.randn(b, 1, 4, 4, generator=g).requires_grad_() if seg else None,
        class_logits=torch.randn(b, 6, generator=g).requires_grad_() if cls else None,
        h_tirads=torch.randn(b, 13, generator=g).requires_grad_() if rad else None,
        h_deep=torch.randn(b, 8, generator=g) if cls else None,
    )


def fake_batch(b: int = 3) -> dict:
    g = torch.Generator().manual_seed(1)
    return {
        "mask": (torch.rand(b, 1, 4, 4, generator=g) > 0.5).float(),
        "has_mask": torch.tensor([True, False, True]),
        "label": torch.tensor([1, -1, 4]),
        "radiomics": torch.randn(b, 13, generator=g),
        "has_radiomics": torch.tensor([True, True, False]),
    }


def test_multitask_weighted_components() -> None:
    out, batch = fake_output(), fake_batch()
    losses = MultitaskLoss(seg_weight=2.0, cls_weight=0.5, rad_weight=3.0, label_smoothing=0.0)(out, batch)
    assert set(losses) == {"seg", "cls", "rad"}
    seg = SegmentationLoss()(out.mask_logits, batch["mask"], batch["has_mask"])
    cls = ClassificationLoss()(out.class_logits, batch["label"])
    # sample 1 has radiomics but no mask: radiomics are only defined from a mask, so only sample 0 counts
    assert out.h_tirads is not None
    rad = ((out.h_tirads[0] - batch["radiomics"][0]) ** 2).mean()
    assert losses["seg"].item() == pytest.approx(2.0 * seg.item(), rel=1e-6)
    assert losses["cls"].item() == pytest.approx(0.5 * cls.item(), rel=1e-6)
    assert losses["rad"].item() == pytest.approx(3.0 * rad.item(), rel=1e-6)
    assert all(v.ndim == 0 for v in losses.values())


def test_multitask_keys_follow_model_outputs() -> None:
    batch = fake_batch()
    assert set(MultitaskLoss()(fake_output(cls=False, rad=False), batch)) == {"seg"}
    assert set(MultitaskLoss()(fake_output(seg=False), batch)) == {"cls", "rad"}
    assert set(MultitaskLoss(rad_weight=0.0)(fake_output(), batch)) == {"seg", "cls"}
    # a segmentation-only model does not need classification keys in the batch
    seg_only = {k: batch[k] for k in ("mask", "has_mask")}
    assert set(MultitaskLoss()(fake_output(cls=False, rad=False), seg_only)) == {"seg"}


def test_multitask_empty_batch_gives_connected_zeros() -> None:
    out, batch = fake_output(), fake_batch()
    batch["has_mask"][:] = False
    batch["label"][:] = -1
    losses = MultitaskLoss(class_weights=[1, 1, 2, 2, 3, 3], label_smoothing=0.1)(out, batch)
    total = sum(losses.values())
    assert all(v.item() == 0.0 for v in losses.values())
    total.backward()
    for t in (out.mask_logits, out.class_logits, out.h_tirads):
        assert t is not None and t.grad is not None and torch.equal(t.grad, torch.zeros_like(t))


def test_multitask_missing_batch_key_named() -> None:
    batch = fake_batch()
    del batch["has_radiomics"]
    with pytest.raises(KeyError, match="has_radiomics"):
        MultitaskLoss()(fake_output(), batch)
    with pytest.raises(ValueError, match="rad_weight"):
        MultitaskLoss(rad_weight=-1.0)


def test_multitask_with_real_model_backward() -> None:
    from rlar.models import build_model

    torch.manual_seed(0)
    model = build_model("multitask", num_classes=6)
    out = model(torch.rand(3, 1, 16, 16))
    batch = fake_batch()
    batch["mask"] = torch.zeros(3, 1, 16, 16)
    losses = MultitaskLoss()(out, batch)
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    embed_grad = model.get_parameter("classifier.embed.weight").grad
    head_grad = model.get_parameter("decoder.head.conv.weight").grad
    assert embed_grad is not None and embed_grad.abs().sum() > 0
    assert head_grad is not None and head_grad.abs().sum() > 0


def test_guidance_feature_mask_supervises_only_kept_features() -> None:
    """Leave-one-feature-out: a left-out dimension gets no gradient and does not enter the MSE."""
    from rlar.losses.guidance import RadiomicsGuidanceLoss

    h = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], requires_grad=True)
    target = torch.tensor([[0.0, 0.0, 10.0], [1.0, 1.0, 10.0]])
    valid = torch.tensor([True, True])
    loss = RadiomicsGuidanceLoss(feature_mask=[True, True, False])(h, target, valid)
    assert loss.item() == pytest.approx((1 + 4 + 1 + 1) / 4)
    loss.backward()
    assert h.grad is not None and h.grad[:, 2].abs().sum() == 0 and h.grad[:, :2].abs().sum() > 0
    with pytest.raises(ValueError, match="at least one"):
        RadiomicsGuidanceLoss(feature_mask=[False, False, False])
