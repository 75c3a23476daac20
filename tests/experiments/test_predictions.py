"""Helpers of the per-image prediction files: binary labels across scales, nodule-level aggregation of cine frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rlar.errors import DataError
from rlar.experiments.predictions import binary_label, nodule_level
from rlar.reporting.tables import classification_inputs


def test_binary_label_follows_each_scale() -> None:
    assert [binary_label(level, "ddti") for level in ("2", "3", "4a", "5")] == [0, 0, 1, 1]
    assert [binary_label(level, "acr") for level in ("TR3", "TR4")] == [0, 1]
    assert binary_label(None, "acr") == -1 and binary_label("4a", "acr") == -1


def test_nodule_level_means_frame_probabilities() -> None:
    frames = pd.DataFrame({
        "image_id": ["c1_0", "c1_1", "c2_0"], "patient_id": ["c1", "c1", "c2"], "clip_id": ["c1", "c1", "c2"],
        "has_mask": [True, True, False], "dice": [0.6, 0.8, np.nan], "iou": [0.4, 0.6, np.nan],
        "hd95_px": [3.0, 5.0, np.nan], "label": [1, 1, 0], "label_name": ["TR2", "TR2", "TR1"],
        "label_binary": [0, 0, 0], "prob_TR1": [0.7, 0.1, 0.9], "prob_TR2": [0.3, 0.9, 0.1],
    })
    nodules = nodule_level(frames).set_index("image_id")
    assert list(nodules.index) == ["c1", "c2"]
    assert nodules.loc["c1", "prob_TR2"] == pytest.approx(0.6) and nodules.loc["c1", "pred_name"] == "TR2"
    assert nodules.loc["c1", "dice"] == pytest.approx(0.7) and bool(nodules.loc["c1", "has_mask"])
    with pytest.raises(DataError, match="clip_id"):
        nodule_level(frames.drop(columns="clip_id"))


def test_binary_space_sums_high_risk_probabilities() -> None:
    frame = pd.DataFrame({"label": [0, 3, -1], "label_name": ["2", "4b", ""],
                          **{f"prob_{n}": [1 / 6] * 3 for n in ("2", "3", "4a", "4b", "4c", "5")}})
    binary = classification_inputs(frame, "binary")
    assert binary is not None
    probs, labels, names = binary
    assert names == ["low_risk", "high_risk"] and labels.tolist() == [0, 1, -1]
    np.testing.assert_allclose(probs[:, 1], 4 / 6)
    levels = classification_inputs(frame, "levels")
    assert levels is not None and levels[0].shape == (3, 6)


def test_binary_space_counts_a_missing_label_name_as_unknown() -> None:
    """A frame read without read_predictions has NaN where a label is unknown: not a low-risk label."""
    frame = pd.DataFrame({"label": [0, 3, -1], "label_name": ["2", "4b", np.nan],
                          **{f"prob_{n}": [1 / 6] * 3 for n in ("2", "3", "4a", "4b", "4c", "5")}})
    binary = classification_inputs(frame, "binary")
    assert binary is not None
    _, labels, _ = binary
    assert labels.tolist() == [0, 1, -1]
