"""The optional ACR descriptor tasks: masked cross-entropy over the labelled samples, heads that exist only when
asked for, batch targets read from the sample records, per-descriptor scores and the report's ACR words."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from rlar.data.dataset import BATCH_KEYS, ThyroidDataset, collate
from rlar.data.labels import LabelSpace
from rlar.data.record import SampleInfo
from rlar.data.sources.base import Source
from rlar.evaluation.evaluate import task_label_column, task_metrics, task_prob_column
from rlar.losses import MultitaskLoss
from rlar.models import build_model
from rlar.models.output import MultitaskOutput
from rlar.tasks import TASKS

COMPOSITION = TASKS["composition"]
SMALL: dict[str, Any] = {"compact_channels": [4, 8, 8, 8]}


def _output(logits: torch.Tensor) -> MultitaskOutput:
    return MultitaskOutput(mask_logits=None, class_logits=None, task_logits={"composition": logits})


def test_loss_is_cross_entropy_over_the_labelled_samples_only() -> None:
    logits = torch.tensor([[2.0, 0.0, 0, 0, 0, 1.0], [0.0, 3.0, 0, 0, 0, 0], [1.0, 1.0, 1, 1, 1, 1]])
    target = torch.tensor([5, -1, 0])  # the second sample's reader recorded no composition
    losses = MultitaskLoss(weights={"composition": 0.5})(_output(logits), {"composition": target})
    expected = 0.5 * F.cross_entropy(logits[[0, 2]], target[[0, 2]])
    assert losses["composition"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_batch_without_a_labelled_sample_gives_zero_not_nan_and_zero_gradients() -> None:
    logits = torch.randn(3, 6, requires_grad=True)
    losses = MultitaskLoss()(_output(logits), {"composition": torch.tensor([-1, -1, -1])})
    assert losses["composition"].item() == 0.0
    losses["composition"].backward()
    assert logits.grad is not None and torch.equal(logits.grad, torch.zeros_like(logits))


def test_a_zero_weight_or_a_missing_head_switches_the_task_off() -> None:
    batch = {"composition": torch.tensor([0, 1, 2])}
    assert "composition" not in MultitaskLoss(weights={"composition": 0.0})(_output(torch.randn(3, 6)), batch)
    no_head = MultitaskOutput(mask_logits=None, class_logits=None)
    assert MultitaskLoss()(no_head, batch) == {}


def test_heads_exist_only_when_asked_for_and_leave_the_other_weights_as_they_were() -> None:
    torch.manual_seed(0)
    plain = build_model(**SMALL)
    torch.manual_seed(0)
    with_heads = build_model(**SMALL, extra_tasks=["composition", "margin"])
    assert not any("task_heads" in key for key in plain.state_dict())  # old checkpoints load unchanged
    shared = plain.state_dict()
    for key, value in with_heads.state_dict().items():
        if key in shared:
            assert torch.equal(value, shared[key]), key  # the heads are drawn after every other layer
    out = with_heads.eval()(torch.rand(2, 1, 32, 32))
    assert {k: tuple(v.shape) for k, v in out.task_logits.items()} == {"composition": (2, 6), "margin": (2, 4)}
    assert plain.eval()(torch.rand(2, 1, 32, 32)).task_logits == {}
    assert with_heads.extra_tasks == ("composition", "margin")


class _DescribedSource(Source):
    """Three images; the reader recorded composition for two of them and margin for none."""

    name = "described"
    scale = "acr"

    def __init__(self, descriptors: list[dict[str, str | None]]) -> None:
        self.descriptors = descriptors
        super().__init__(None)

    def _scan(self) -> Iterator[SampleInfo]:
        for k, described in enumerate(self.descriptors):
            yield SampleInfo(image_id=f"i{k}", patient_id=f"p{k}", source=self.name, tirads="TR3", scale="acr",
                             descriptors=described, has_mask=False, location=k)

    def _load(self, info: SampleInfo) -> tuple[np.ndarray, None, dict]:
        return np.full((8, 8), 0.5, dtype=np.float32), None, {}


def test_batches_carry_the_descriptor_class_index_where_the_source_records_it() -> None:
    source = _DescribedSource([{"composition": "solid"}, {"composition": None}, {"composition": "spongiform"}])
    ds = ThyroidDataset(source, None, (8, 8), LabelSpace("acr"))
    batch = collate([ds[i] for i in range(3)])
    solid, spongiform = COMPOSITION.classes.index("solid"), COMPOSITION.classes.index("spongiform")
    assert batch["composition"].tolist() == [solid, -1, spongiform]
    assert set(batch) == {*BATCH_KEYS, "composition"}  # margin is recorded for no image: no key
    unrecorded = ThyroidDataset(_DescribedSource([{}, {}]), None, (8, 8), LabelSpace("acr"))
    assert set(collate([unrecorded[0], unrecorded[1]])) == set(BATCH_KEYS)


def test_scores_use_the_labelled_test_images_only() -> None:
    classes = COMPOSITION.classes
    solid, cystic = classes.index("solid"), classes.index("cystic")
    probs = np.full((5, len(classes)), 0.01)
    probs[[0, 1], solid] = 0.9  # two solid nodules called solid
    probs[2, cystic] = 0.9  # a cystic one called cystic
    probs[3, solid] = 0.9  # a cystic one called solid
    probs[4, cystic] = 0.9  # unlabelled: must not count
    frame = pd.DataFrame({task_label_column("composition"): [solid, solid, cystic, cystic, -1]}
                         | {task_prob_column("composition", c): probs[:, k] for k, c in enumerate(classes)})
    scores = task_metrics(frame)
    assert scores["composition_n"] == 4
    # per-class F1: solid 2/(2+0.5*(1+0)) = 0.8, cystic 1/(1+0.5*(0+1)) = 2/3
    assert scores["composition_macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    # one-vs-rest AUROC by hand. solid: positives 0, 1 (p 0.9) vs negatives 2 (0.01), 3 (0.9): pairs 1, 0.5, 1, 0.5
    # -> 0.75; cystic: positives 2 (0.9), 3 (0.01) vs negatives 0, 1 (0.01): pairs 1, 1, 0.5, 0.5 -> 0.75.
    assert scores["composition_auroc"] == pytest.approx(0.75)
    assert set(scores) == {"composition_macro_f1", "composition_auroc", "composition_n"}


def test_a_bad_descriptor_target_names_its_batch_key() -> None:
    with pytest.raises(ValueError, match=r"batch\['composition'\] holds \[6\]"):
        MultitaskLoss()(_output(torch.randn(2, 6)), {"composition": torch.tensor([6, 0])})


def test_a_descriptor_model_on_a_source_without_descriptors_scores_nothing_and_does_not_fail() -> None:
    from rlar.evaluation.evaluate import metrics_from_predictions, predict

    model = build_model(arch="classification", num_classes=5, **SMALL, extra_tasks=["margin"])
    ds = ThyroidDataset(_DescribedSource([{}, {}, {}]), None, (32, 32), LabelSpace("acr"))
    frame = predict(model, ds, progress=False)
    assert frame[task_label_column("margin")].tolist() == [-1, -1, -1]
    scores = metrics_from_predictions(frame)
    assert scores["margin_n"] == 0 and np.isnan(scores["margin_macro_f1"]) and np.isnan(scores["margin_auroc"])
