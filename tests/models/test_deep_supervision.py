"""Deep supervision (model option ``deep_supervision``): coarser decoder logits trained with the main ones."""

from __future__ import annotations

import pytest
import torch

from rlar.errors import ConfigError
from rlar.losses import MultitaskLoss
from rlar.losses.multitask import deep_supervised
from rlar.losses.segmentation import SegmentationLoss
from rlar.models import build_model


def _batch(n: int = 2, size: int = 40) -> dict:
    mask = torch.zeros(n, 1, size, size)
    mask[:, :, 10:25, 12:30] = 1.0
    return {"image": torch.rand(n, 1, size, size), "mask": mask, "has_mask": torch.tensor([True] * n),
            "label": torch.tensor([0, 1][:n]), "radiomics": torch.zeros(n, 13), "has_radiomics": torch.zeros(n).bool()}


def test_aux_logits_only_in_training_and_at_the_input_size() -> None:
    torch.manual_seed(0)
    model = build_model("multitask", "compact", num_classes=2, compact_channels=(4, 8, 8, 8), deep_supervision=2)
    images = torch.rand(2, 1, 40, 36)  # not a multiple of the stride: padded, then cropped back
    out = model.train()(images)
    assert len(out.aux_mask_logits) == 2
    assert all(a.shape == out.mask_logits.shape == (2, 1, 40, 36) for a in out.aux_mask_logits)
    assert out.auxiliary_for_task("seg") is out.aux_mask_logits and out.auxiliary_for_task("cls") == []
    assert model.eval()(images).aux_mask_logits == []
    plain = build_model("multitask", "compact", num_classes=2, compact_channels=(4, 8, 8, 8))
    assert plain.train()(images).aux_mask_logits == []


def test_loss_is_the_normalised_weighted_mean_and_trains_the_aux_heads() -> None:
    torch.manual_seed(0)
    model = build_model("segmentation", "compact", num_classes=2, compact_channels=(4, 8, 8, 8), deep_supervision=2)
    batch = _batch()
    out = model.train()(batch["image"])
    loss_fn = MultitaskLoss()
    total = loss_fn(out, batch)["seg"]
    seg = loss_fn.seg_loss
    assert isinstance(seg, SegmentationLoss)
    parts = [seg(t, batch["mask"], batch["has_mask"]) for t in (out.mask_logits, *out.aux_mask_logits)]
    expected = (parts[0] + 0.5 * parts[1] + 0.25 * parts[2]) / 1.75
    assert torch.allclose(total, expected)
    total.backward()
    assert model.decoder is not None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoder.aux_heads.parameters())
    assert deep_supervised(torch.tensor(2.0), []) == 2.0


def test_option_is_validated() -> None:
    with pytest.raises(ValueError, match="deep_supervision"):
        build_model("multitask", "compact", num_classes=2, compact_channels=(4, 8, 8, 8), deep_supervision=9)
    with pytest.raises(ConfigError, match="deep_supervision"):
        build_model("multitask", "compact", num_classes=2, deep_supervision=-1)
