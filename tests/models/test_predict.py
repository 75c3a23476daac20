"""predict_batch (docs/interfaces.md): probabilities of every output, and horizontal-flip test-time augmentation."""

from __future__ import annotations

import pytest
import torch

from rlar.models import Prediction, build_model, predict_batch
from rlar.tasks import RADIOMICS_DIM


@pytest.fixture(scope="module")
def multitask() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("multitask", num_classes=4, compact_channels=(8, 16), deep_dim=5).eval()


@pytest.mark.parametrize("arch", ["multitask", "segmentation", "classification"])
def test_shapes_and_probabilities(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(arch, num_classes=4, compact_channels=(8, 16)).eval()
    images = torch.rand(3, 1, 32, 24)
    with torch.no_grad():
        pred = predict_batch(model, images)
        out = model(images)
    assert isinstance(pred, Prediction)
    if arch == "classification":
        assert pred.mask_prob is None
    else:
        assert pred.mask_prob is not None and pred.mask_prob.shape == (3, 1, 32, 24)
        assert torch.equal(pred.mask_prob, torch.sigmoid(out.mask_logits))
    if arch == "segmentation":
        assert pred.class_prob is None and pred.h_tirads is None
    else:
        assert pred.class_prob is not None and pred.class_prob.shape == (3, 4)
        assert torch.allclose(pred.class_prob.sum(dim=1), torch.ones(3))
        assert torch.equal(pred.class_prob, torch.softmax(out.class_logits, dim=1))
        assert pred.h_tirads is not None and pred.h_tirads.shape == (3, RADIOMICS_DIM)


def test_tta_is_the_mean_of_the_plain_and_mirrored_passes(multitask: torch.nn.Module) -> None:
    images = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        plain = predict_batch(multitask, images)
        mirrored = predict_batch(multitask, images.flip(-1))
        tta = predict_batch(multitask, images, tta=True)
    assert tta.mask_prob is not None and plain.mask_prob is not None and mirrored.mask_prob is not None
    assert tta.class_prob is not None and plain.class_prob is not None and mirrored.class_prob is not None
    assert tta.h_tirads is not None and plain.h_tirads is not None and mirrored.h_tirads is not None
    assert torch.allclose(tta.mask_prob, (plain.mask_prob + mirrored.mask_prob.flip(-1)) / 2)
    assert torch.allclose(tta.class_prob, (plain.class_prob + mirrored.class_prob) / 2)
    assert torch.allclose(tta.h_tirads, (plain.h_tirads + mirrored.h_tirads) / 2)
    # a random network is not mirror-equivariant by itself, so TTA really changed the prediction
    assert not torch.allclose(tta.mask_prob, plain.mask_prob)


def test_tta_prediction_is_exactly_mirror_equivariant(multitask: torch.nn.Module) -> None:
    images = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        tta = predict_batch(multitask, images, tta=True)
        tta_of_mirror = predict_batch(multitask, images.flip(-1), tta=True)
        symmetric = torch.cat([images[..., :16], images[..., :16].flip(-1)], dim=-1)
        tta_sym = predict_batch(multitask, symmetric, tta=True)
    assert tta.mask_prob is not None and tta_of_mirror.mask_prob is not None and tta_sym.mask_prob is not None
    assert tta.class_prob is not None and tta_of_mirror.class_prob is not None
    assert torch.equal(tta_of_mirror.mask_prob, tta.mask_prob.flip(-1))
    assert torch.equal(tta_of_mirror.class_prob, tta.class_prob)
    # a mirror-symmetric image gives a mirror-symmetric mask
    assert torch.equal(tta_sym.mask_prob, tta_sym.mask_prob.flip(-1))


def test_bad_inputs() -> None:
    model = build_model("segmentation", compact_channels=(8,)).eval()
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        predict_batch(model, torch.rand(1, 16, 16))
    with pytest.raises(TypeError, match="MultitaskOutput"):
        predict_batch(lambda x: x, torch.rand(1, 1, 16, 16))  # type: ignore[arg-type]


def test_every_task_output_is_a_field_of_the_model_output(multitask: torch.nn.Module) -> None:
    from dataclasses import fields

    from rlar.models import MultitaskOutput
    from rlar.tasks import TASKS

    names = {f.name for f in fields(MultitaskOutput)}
    assert all(spec.output in names for spec in TASKS.values())
    with torch.no_grad():
        out = multitask(torch.rand(1, 1, 16, 16))
    assert out.for_task("seg") is out.mask_logits and out.for_task("rad") is out.h_tirads
    with pytest.raises(KeyError, match="unknown task 'depth'"):
        out.for_task("depth")
