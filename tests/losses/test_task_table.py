"""MultitaskLoss reads the task table rlar.tasks.TASKS: keys, outputs, targets, validity and named weights."""

from __future__ import annotations

import pytest
import torch

from rlar.losses import ClassificationLoss, MultitaskLoss
from rlar.losses.multitask import LOSS_KINDS, loss_attribute
from rlar.models.output import MultitaskOutput
from rlar.tasks import RADIOMICS_DIM, TASK_NAMES, TASKS

OPTIONAL = tuple(name for name in TASK_NAMES if TASKS[name].optional)


def _output(b: int = 4, optional: bool = False) -> MultitaskOutput:
    g = torch.Generator().manual_seed(0)
    return MultitaskOutput(
        mask_logits=torch.randn(b, 1, 4, 4, generator=g),
        class_logits=torch.randn(b, 5, generator=g),
        h_tirads=torch.randn(b, RADIOMICS_DIM, generator=g),
        h_deep=torch.randn(b, 3, generator=g),
        task_logits={n: torch.randn(b, len(TASKS[n].classes), generator=g) for n in OPTIONAL} if optional else {},
    )


def _batch(b: int = 4) -> dict:
    g = torch.Generator().manual_seed(1)
    return {
        "mask": (torch.rand(b, 1, 4, 4, generator=g) > 0.5).float(),
        "has_mask": torch.tensor([True, False, True, True]),
        "label": torch.tensor([1, -1, 4, 0]),
        "radiomics": torch.randn(b, RADIOMICS_DIM, generator=g),
        "has_radiomics": torch.tensor([True, True, False, True]),
    } | {name: torch.tensor([-1, 1, -1, 0]) for name in OPTIONAL}


def test_every_task_has_a_loss_and_keys_follow_the_table_order() -> None:
    loss_fn = MultitaskLoss()
    for spec in TASKS.values():
        assert spec.loss in LOSS_KINDS
        assert callable(getattr(loss_fn, loss_attribute(spec.name)))
    # an optional task has a key only when the network has its head
    assert tuple(loss_fn(_output(), _batch())) == tuple(n for n in TASK_NAMES if n not in OPTIONAL)
    assert tuple(loss_fn(_output(optional=True), _batch())) == TASK_NAMES


def test_each_task_uses_exactly_the_samples_its_spec_calls_valid() -> None:
    out, batch = _output(optional=True), _batch()
    loss_fn = MultitaskLoss()
    losses = loss_fn(out, batch)
    for name, spec in TASKS.items():
        valid = spec.valid(batch)
        output = out.for_task(name)
        assert output is not None
        pred = output[valid]
        target = batch[spec.target_keys[0]][valid]
        # the loss on the valid samples alone, every one of them marked valid, gives the same value
        alone = loss_fn.task_loss(name)(pred, target, torch.ones(int(valid.sum()), dtype=torch.bool))
        assert losses[name].item() == pytest.approx(alone.item(), rel=1e-6), name


def test_named_weights_override_and_validate() -> None:
    out, batch = _output(), _batch()
    base = MultitaskLoss()(out, batch)
    weighted = MultitaskLoss(weights={"seg": 2.0, "rad": 0.5})(out, batch)
    assert weighted["seg"].item() == pytest.approx(2.0 * base["seg"].item())
    assert weighted["cls"].item() == pytest.approx(base["cls"].item())
    assert weighted["rad"].item() == pytest.approx(0.5 * base["rad"].item())
    assert "rad" not in MultitaskLoss(weights={"rad": 0.0})(out, batch)  # auxiliary task with weight 0 is off
    assert "cls" in MultitaskLoss(weights={"cls": 0.0})(out, batch)  # a main task keeps its (zero) key
    loss_fn = MultitaskLoss(seg_weight=3.0, weights={"cls": 0.25})
    assert (loss_fn.weights["seg"], loss_fn.weights["cls"], loss_fn.weights["rad"]) == (3.0, 0.25, 1.0)
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['depth'\]"):
        MultitaskLoss(weights={"depth": 1.0})
    with pytest.raises(ValueError, match="cls_weight"):
        MultitaskLoss(weights={"cls": float("nan")})


def test_missing_validity_key_is_named_with_the_task() -> None:
    batch = _batch()
    del batch["has_mask"]
    with pytest.raises(KeyError, match="has_mask.*'seg' loss"):
        MultitaskLoss()(_output(), batch)


def test_classification_valid_argument_masks_samples() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    masked = ClassificationLoss()(logits, labels, torch.tensor([True, False, True]))
    expected = ClassificationLoss()(logits[[0, 2]], labels[[0, 2]])
    assert masked.item() == pytest.approx(expected.item())
