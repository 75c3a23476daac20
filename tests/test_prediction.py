"""The prediction options (config section ``prediction``): mask clean-up modes, validation, and their use in
the evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from rlar.models.output import MultitaskOutput
from rlar.prediction import MASK_THRESHOLD, PredictionOptions, clean_mask


def _two_regions_and_a_speck() -> np.ndarray:
    mask = np.zeros((12, 24), dtype=bool)
    mask[2:8, 1:7] = True  # 36 px: the second pane's view of the nodule
    mask[2:10, 12:20] = True  # 64 px: the largest region
    mask[11, 23] = True  # 1 px speck
    return mask


def test_clean_mask_modes() -> None:
    mask = _two_regions_and_a_speck()
    np.testing.assert_array_equal(clean_mask(mask, "none"), mask)
    largest = clean_mask(mask, "largest")
    assert largest.sum() == 64 and largest[5, 15] and not largest[5, 3]
    relative = clean_mask(mask, "relative", min_region_fraction=0.25)
    assert relative.sum() == 36 + 64 and not relative[11, 23]
    assert clean_mask(mask, "relative", min_region_fraction=0.6).sum() == 64
    # Diagonal neighbours belong to one region (8-connectivity), so a diagonal line is not cut up.
    diagonal = np.eye(6, dtype=bool)
    np.testing.assert_array_equal(clean_mask(diagonal, "largest"), diagonal)
    empty = np.zeros((5, 5), dtype=bool)
    assert not clean_mask(empty, "largest").any() and not clean_mask(empty, "relative").any()


def test_clean_mask_returns_a_new_array() -> None:
    mask = _two_regions_and_a_speck()
    out = clean_mask(mask, "none")
    out[:] = False
    assert mask.any()


def test_options_threshold_and_validation() -> None:
    probs = np.where(_two_regions_and_a_speck(), 0.9, 0.1)
    probs[0, 0] = MASK_THRESHOLD  # exactly at the threshold is background
    assert PredictionOptions().mask(probs).sum() == 101
    assert PredictionOptions(mask_postprocess="largest").masks(np.stack([probs, 1 - probs])).shape == (2, 12, 24)
    with pytest.raises(ValidationError):
        PredictionOptions(mask_postprocess="biggest")  # type: ignore[arg-type]  # the invalid value is the test
    with pytest.raises(ValidationError):
        PredictionOptions(min_region_fraction=0.0)
    with pytest.raises(ValidationError):
        PredictionOptions(tat=True)  # type: ignore[call-arg]  # the misspelt option is the test
    with pytest.raises(ValueError, match="unknown mask post-processing"):
        clean_mask(probs > 0.5, "biggest")  # type: ignore[arg-type]


def test_config_section_is_validated_with_its_key() -> None:
    from rlar.errors import ConfigError
    from rlar.training.config import find_config, load_config

    path, _ = find_config("phantom")
    cfg = load_config(path, ["prediction.tta=true", "prediction.mask_postprocess=relative"])
    assert cfg.prediction.tta and cfg.prediction.mask_postprocess == "relative"
    with pytest.raises(ConfigError, match="prediction.mask_postprocess"):
        load_config(path, ["prediction.mask_postprocess=biggest"])


class _SpeckModel(torch.nn.Module):
    """Predicts the true square plus one stray pixel, the same for the image and its mirror."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> MultitaskOutput:
        self.calls += 1
        logits = torch.where(x > 0.3, 10.0, -10.0)
        logits[..., 0, 0] = 10.0
        return MultitaskOutput(mask_logits=logits, class_logits=None)


def test_evaluation_applies_the_options() -> None:
    from rlar.data.dataset import ThyroidDataset
    from rlar.data.labels import LabelSpace
    from rlar.evaluation.evaluate import predict
    from tests.evaluation.test_evaluate import SIZE, ToySource

    dataset = ThyroidDataset(ToySource([("a", "TR1", True), ("b", "TR2", True)]), None, SIZE, LabelSpace("acr"))
    model = _SpeckModel()
    raw = predict(model, dataset, progress=False)
    assert model.calls == 1 and (raw["dice"] < 1.0).all()
    cleaned = predict(model, dataset, progress=False, options=PredictionOptions(tta=True, mask_postprocess="largest"))
    assert model.calls == 3  # one batch, twice: the image and its mirror
    assert (cleaned["dice"] == 1.0).all()
