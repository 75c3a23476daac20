"""predict / evaluate / validation_score with tiny hand-written models on an in-memory source."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from rlar.data.dataset import ThyroidDataset
from rlar.data.labels import LabelSpace
from rlar.data.record import SampleInfo
from rlar.data.sources.base import Source
from rlar.evaluation.evaluate import evaluate, metrics_from_predictions, predict, validation_score
from rlar.evaluation.metrics import classification_metrics, segmentation_metrics
from rlar.models.output import MultitaskOutput

SIZE = (24, 24)
LEVELS = ("TR1", "TR2", "TR3", "TR4", "TR5")


class ToySource(Source):
    """Image i: a bright square nodule whose grey level encodes its TI-RADS class (readable by a toy model)."""

    name = "toy"
    scale = "acr"

    def __init__(self, specs: list[tuple[str, str | None, bool]]) -> None:
        self.specs = specs  # (image_id, tirads, annotated)
        super().__init__(None)

    def _scan(self) -> Iterator[SampleInfo]:
        for k, (image_id, tirads, annotated) in enumerate(self.specs):
            yield SampleInfo(image_id, f"p{k}", self.name, tirads=tirads, scale="acr", has_mask=annotated, location=k)

    def _load(self, info: SampleInfo) -> tuple[np.ndarray, np.ndarray | None, dict]:
        k = info.location
        level = LEVELS.index(info.tirads) if info.tirads else 0
        mask = np.zeros(SIZE, dtype=bool)
        mask[4 + k % 5 : 12 + k % 5, 6:14] = True
        image = np.where(mask, 0.5 + 0.1 * level, 0.05).astype(np.float32)
        return image, (mask if self.specs[k][2] else None), {}


class ToyModel(nn.Module):
    """Segments pixels brighter than 0.3 and reads the class from the nodule's grey level."""

    def __init__(self, segment: bool = True, classify: bool = True, shift_mask: int = 0) -> None:
        super().__init__()
        self.segment, self.classify, self.shift_mask = segment, classify, shift_mask
        self.dummy = nn.Parameter(torch.zeros(1))  # so .eval()/.train() and devices behave like a real model

    def forward(self, x: torch.Tensor) -> MultitaskOutput:
        mask_logits = class_logits = None
        if self.segment:
            mask_logits = torch.where(x > 0.3, 10.0, -10.0).roll(self.shift_mask, dims=-1)
        if self.classify:
            level = ((x.amax(dim=(1, 2, 3)) - 0.5) / 0.1).round().clamp(0, 4).long()
            class_logits = torch.nn.functional.one_hot(level, 5).float() * 3.0
        return MultitaskOutput(mask_logits=mask_logits, class_logits=class_logits)


@pytest.fixture
def dataset() -> ThyroidDataset:
    specs = [("a", "TR1", True), ("b", "TR3", True), ("c", None, True), ("d", "TR5", False), ("e", "TR2", True)]
    return ThyroidDataset(ToySource(specs), None, SIZE, LabelSpace("acr"))


def test_predict_frame_columns_and_values(dataset: ThyroidDataset) -> None:
    model = ToyModel()
    model.train()
    frame = predict(model, dataset, batch_size=2, progress=False)
    assert model.training  # mode restored
    assert frame["image_id"].tolist() == ["a", "b", "c", "d", "e"]
    assert frame["label"].tolist() == [0, 2, -1, 4, 1]
    assert frame["pred_class"].tolist() == [0, 2, 0, 4, 1]
    assert frame["pred_class_name"].tolist() == ["TR1", "TR3", "TR1", "TR5", "TR2"]
    probs = frame[[f"prob_{n}" for n in LEVELS]].to_numpy()
    expected = torch.softmax(torch.eye(5)[[0, 2, 0, 4, 1]] * 3.0, dim=1).numpy()
    np.testing.assert_allclose(probs, expected, rtol=1e-6)
    np.testing.assert_allclose(frame["confidence"], expected.max(axis=1), rtol=1e-6)
    # Perfect segmentation on annotated images; "d" has no annotation -> NaN and excluded.
    assert frame["dice"].iloc[[0, 1, 2, 4]].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert math.isnan(frame["dice"].iloc[3]) and not frame["has_truth"].iloc[3]
    assert frame["pred_mask"].iloc[0].dtype == bool and frame["pred_mask"].iloc[0].shape == SIZE
    np.testing.assert_array_equal(frame["pred_mask"].iloc[1], dataset[1]["mask"][0].numpy() > 0.5)


def test_evaluate_matches_metric_functions(dataset: ThyroidDataset) -> None:
    model = ToyModel(shift_mask=2)  # masks shifted 2 px to the right: imperfect but known
    metrics = evaluate(model, dataset, batch_size=3, progress=False)
    annotated = [0, 1, 2, 4]
    preds = np.stack([(model(dataset[i]["image"][None]).mask_logits[0, 0] > 0).numpy() for i in annotated])
    truths = np.stack([dataset[i]["mask"][0].numpy() > 0.5 for i in annotated])
    seg = segmentation_metrics(preds, truths)
    assert metrics["dice"] == pytest.approx(seg["dice"]) and metrics["dice"] < 1.0
    assert metrics["dice"] == pytest.approx(2 * 48 / 128)  # 8x8 squares overlapping on 8x6 pixels
    assert metrics["hd95_px"] == pytest.approx(seg["hd95_px"])
    assert metrics["n_evaluated"] == 4 and metrics["n_unannotated"] == 1 and metrics["n_images"] == 5
    assert metrics["macro_f1"] == pytest.approx(1.0) and metrics["accuracy"] == pytest.approx(1.0)
    assert metrics["n_labelled"] == 4 and metrics["n_unlabelled"] == 1
    probs = torch.softmax(torch.eye(5)[[0, 2, 4, 1]] * 3.0, dim=1).numpy()
    cls = classification_metrics(probs, np.array([0, 2, 4, 1]), LEVELS)
    assert metrics["ece"] == pytest.approx(cls["ece"]) and metrics["ece"] > 0
    assert validation_score(metrics) == pytest.approx((metrics["dice"] + 1.0) / 2)


def test_single_task_models_report_their_task_only(dataset: ThyroidDataset) -> None:
    seg_only = evaluate(ToyModel(classify=False), dataset, progress=False)
    assert "dice" in seg_only and "macro_f1" not in seg_only and "auroc" not in seg_only
    assert validation_score(seg_only) == pytest.approx(seg_only["dice"])
    cls_only = evaluate(ToyModel(segment=False), dataset, progress=False)
    assert "macro_f1" in cls_only and "dice" not in cls_only and "hd95_px" not in cls_only
    assert validation_score(cls_only) == pytest.approx(cls_only["macro_f1"])


def test_masks_written_as_png(dataset: ThyroidDataset, tmp_path: Path) -> None:
    frame = predict(ToyModel(classify=False), dataset, progress=False, output_dir=tmp_path, keep_masks=False)
    assert "pred_mask" not in frame.columns
    for i, path in enumerate(frame["pred_mask_path"]):
        written = np.asarray(Image.open(path)) > 127
        np.testing.assert_array_equal(written, dataset[i]["image"][0].numpy() > 0.3)


def test_model_class_count_must_match_label_space() -> None:
    ds = ThyroidDataset(ToySource([("a", "TR1", True)]), None, SIZE, LabelSpace("acr", "binary"))
    with pytest.raises(ValueError, match="5 classes"):
        predict(ToyModel(), ds, progress=False)


def test_validation_score_rules() -> None:
    assert validation_score({"dice": 0.8, "macro_f1": 0.4}) == pytest.approx(0.6)
    assert validation_score({"dice": float("nan"), "macro_f1": 0.4}) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="dice"):
        validation_score({"dice": float("nan")})
    with pytest.raises(ValueError):
        validation_score({"accuracy": 0.9})


def test_metrics_from_predictions_infers_class_names(dataset: ThyroidDataset) -> None:
    frame = predict(ToyModel(segment=False), dataset, progress=False)
    metrics = metrics_from_predictions(frame)
    assert metrics["class_names"] == list(LEVELS)
    assert metrics["confusion_matrix"].trace() == 4
