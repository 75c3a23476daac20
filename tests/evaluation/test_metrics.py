"""Metric values on hand-made cases whose answers are worked out by hand (or by an independent formula)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from rlar.evaluation.metrics import (
    WORST_CASE_HD95,
    classification_metrics,
    expected_calibration_error,
    format_mean_std,
    segmentation_metrics,
    summarise_folds,
)


def box(shape: tuple[int, int] = (16, 20), top: int = 0, left: int = 0, height: int = 0, width: int = 0) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + height, left : left + width] = True
    return mask


# ---------------------------------------------------------------------------------------------- segmentation


def test_perfect_prediction() -> None:
    truth = np.stack([box(top=3, left=4, height=6, width=5), box(top=8, left=10, height=4, width=4)])
    result = segmentation_metrics(truth.copy(), truth)
    assert result["dice"] == pytest.approx(1.0)
    assert result["iou"] == pytest.approx(1.0)
    assert result["hd95_px"] == pytest.approx(0.0)
    assert result["n_evaluated"] == 2 and result["n_missed"] == 0


def test_disjoint_and_partial_overlap() -> None:
    truth = np.stack([box(top=1, left=1, height=1, width=1), box(top=2, left=2, height=2, width=4)])
    pred = np.stack([box(top=1, left=5, height=1, width=1), box(top=2, left=2, height=2, width=2)])
    result = segmentation_metrics(pred, truth)
    per = result["per_image"]
    # Disjoint single pixels 4 columns apart: Dice 0, IoU 0, every surface distance is 4.
    assert per["dice"][0] == 0.0 and per["iou"][0] == 0.0
    assert per["hd95_px"][0] == pytest.approx(4.0)
    # 2x2 inside 2x4: Dice = 2*4/(4+8), IoU = 4/8.
    assert per["dice"][1] == pytest.approx(2 / 3)
    assert per["iou"][1] == pytest.approx(0.5)
    assert result["dice"] == pytest.approx((0 + 2 / 3) / 2)


def test_empty_prediction_on_nodule_is_a_miss_with_diagonal_hd95() -> None:
    shape = (16, 20)
    truth = np.stack([box(shape, 2, 3, 5, 5), box(shape, 2, 3, 5, 5)])
    pred = np.stack([np.zeros(shape, bool), box(shape, 2, 3, 5, 5)])
    result = segmentation_metrics(pred, truth)
    per = result["per_image"]
    assert WORST_CASE_HD95 == "image diagonal" and result["hd95_worst_case"] == WORST_CASE_HD95
    assert per["dice"][0] == 0.0 and per["iou"][0] == 0.0
    assert per["hd95_px"][0] == pytest.approx(math.hypot(16, 20))
    assert result["n_missed"] == 1
    assert result["hd95_px"] == pytest.approx(math.hypot(16, 20) / 2)


def test_empty_truth_is_excluded_and_counted() -> None:
    shape = (8, 8)
    truth = np.stack([np.zeros(shape, bool), np.zeros(shape, bool), box(shape, 1, 1, 3, 3)])
    pred = np.stack([box(shape, 0, 0, 2, 2), np.zeros(shape, bool), box(shape, 1, 1, 3, 3)])
    result = segmentation_metrics(pred, truth)
    assert result["n_empty_truth"] == 2
    assert result["n_false_positive_on_empty_truth"] == 1
    assert result["n_evaluated"] == 1
    assert np.isnan(result["per_image"]["dice"][:2]).all()
    assert result["dice"] == pytest.approx(1.0)  # the empty-truth images did not drag it to NaN or 0
    only_empty = segmentation_metrics(pred[:2], truth[:2])
    assert math.isnan(only_empty["dice"]) and only_empty["n_evaluated"] == 0


def test_segmentation_input_checks() -> None:
    with pytest.raises(ValueError, match="differs"):
        segmentation_metrics(np.zeros((2, 4, 4), bool), np.zeros((2, 4, 5), bool))
    with pytest.raises(ValueError, match="binary"):
        segmentation_metrics(np.full((1, 4, 4), 0.3), np.zeros((1, 4, 4), bool))
    # (N, 1, H, W) float 0/1 is accepted, as produced by the collate function.
    result = segmentation_metrics(np.ones((1, 1, 4, 4)), np.ones((1, 1, 4, 4)))
    assert result["dice"] == pytest.approx(1.0)


# -------------------------------------------------------------------------------------------- classification


def one_hot_probs(preds: list[int] | np.ndarray, num_classes: int, confidence: float = 0.9) -> np.ndarray:
    probs = np.full((len(preds), num_classes), (1 - confidence) / (num_classes - 1))
    probs[np.arange(len(preds)), preds] = confidence
    return probs


def test_quadratic_kappa_hand_computed() -> None:
    # Truth 0,1,2, prediction 0,2,2 with 3 classes; quadratic weights (i-j)^2/4:
    # observed weighted disagreement 1/12, expected 5/12 -> kappa = 1 - 1/5 = 0.8.
    result = classification_metrics(one_hot_probs([0, 2, 2], 3), np.array([0, 1, 2]), ["a", "b", "c"])
    assert result["qwk"] == pytest.approx(0.8)
    assert result["accuracy"] == pytest.approx(2 / 3)
    np.testing.assert_array_equal(result["confusion_matrix"], [[1, 0, 0], [0, 0, 1], [0, 0, 1]])
    # F1 per class: a 1, b 0 (never predicted), c 2*1*0.5/1.5 = 2/3; macro over the 3 occurring classes.
    assert result["macro_f1"] == pytest.approx((1 + 0 + 2 / 3) / 3)
    assert result["balanced_accuracy"] == pytest.approx((1 + 0 + 1) / 3)


def test_unknown_labels_are_dropped() -> None:
    probs = one_hot_probs([0, 1, 1, 0], 2)
    result = classification_metrics(probs, np.array([0, 1, -1, -1]), ["low", "high"])
    assert result["n_labelled"] == 2 and result["n_unlabelled"] == 2
    assert result["accuracy"] == 1.0 and result["macro_f1"] == 1.0
    none_known = classification_metrics(probs, np.full(4, -1), ["low", "high"])
    assert none_known["n_labelled"] == 0 and math.isnan(none_known["macro_f1"])
    with pytest.raises(ValueError, match="class index"):
        classification_metrics(probs, np.array([0, 1, 2, 0]), ["low", "high"])


def test_ece_perfectly_calibrated_and_miscalibrated() -> None:
    # Bin at 0.8 with 8/10 correct, bin at 0.6 with 3/5 correct: confidence equals accuracy -> ECE 0.
    probs = np.array([[0.8, 0.2]] * 10 + [[0.6, 0.4]] * 5)
    labels = np.array([0] * 8 + [1] * 2 + [0] * 3 + [1] * 2)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)
    # Overconfident half (conf 0.9, acc 0.5) and calibrated half (conf 0.6, acc 0.6): ECE = 0.5 * 0.4.
    probs = np.array([[0.9, 0.1]] * 10 + [[0.4, 0.6]] * 10)
    labels = np.array([0] * 5 + [1] * 5 + [1] * 6 + [0] * 4)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.2)
    assert classification_metrics(probs, labels, ["a", "b"])["ece"] == pytest.approx(0.2)
    # Confidence exactly 1 lands in the last bin (and is right): no error.
    assert expected_calibration_error(np.array([[1.0, 0.0]]), np.array([0])) == 0.0


def test_auroc_binary_and_all_classes_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(40, 4))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.tile(np.arange(4), 10)
    result = classification_metrics(probs, labels, list("abcd"))
    assert result["auroc"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    assert result["auroc_missing_classes"] == []
    binary = classification_metrics(probs[:, :2] / probs[:, :2].sum(1, keepdims=True), labels % 2, ["n", "p"])
    assert binary["auroc"] == pytest.approx(roc_auc_score(labels % 2, probs[:, 1] / probs[:, :2].sum(1)))


def test_auroc_with_missing_class_uses_present_classes() -> None:
    labels = np.array([0, 0, 2, 2, 2])
    probs = np.array(
        [[0.7, 0.2, 0.1], [0.5, 0.1, 0.4], [0.3, 0.1, 0.6], [0.6, 0.1, 0.3], [0.2, 0.3, 0.5]]
    )
    result = classification_metrics(probs, labels, ["low", "mid", "high"])
    # Independent count: AUC = fraction of (positive, negative) pairs ranked correctly (ties count half).
    def pairwise(k: int) -> float:
        pos, neg = probs[labels == k, k], probs[labels != k, k]
        return float(np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg]))

    assert pairwise(0) == pytest.approx(5 / 6) and pairwise(2) == pytest.approx(5 / 6)
    assert result["auroc"] == pytest.approx((pairwise(0) + pairwise(2)) / 2)
    assert result["auroc_classes"] == ["low", "high"]
    assert result["auroc_missing_classes"] == ["mid"]
    assert math.isnan(result["auroc_per_class"][1])
    one_class = classification_metrics(probs[:2], labels[:2], ["low", "mid", "high"])
    assert math.isnan(one_class["auroc"])


# ----------------------------------------------------------------------------------------------------- folds


def test_summarise_folds_and_format() -> None:
    folds: list[dict[str, Any]] = [
        {"dice": 0.5, "auroc": float("nan"), "class_names": ["a"], "confusion_matrix": np.eye(2)},
        {"dice": 0.7, "auroc": 0.8},
        {"dice": 0.6, "auroc": 0.9},
    ]
    summary = summarise_folds(folds)
    assert set(summary) == {"dice", "auroc"}
    assert summary["dice"]["mean"] == pytest.approx(0.6)
    assert summary["dice"]["std"] == pytest.approx(0.1)  # sample std (ddof=1) of 0.5, 0.6, 0.7
    assert summary["auroc"]["n"] == 2 and summary["auroc"]["mean"] == pytest.approx(0.85)
    single = summarise_folds([{"dice": 0.42}])
    assert single["dice"]["mean"] == pytest.approx(0.42) and math.isnan(single["dice"]["std"])
    assert format_mean_std(0.81234, 0.0345) == "0.812 ± 0.035"
    assert format_mean_std(0.81234, float("nan")) == "0.812 ± n/a"
    assert format_mean_std(float("nan"), float("nan")) == "n/a"
    assert format_mean_std(0.5, 0.01, digits=1) == "0.5 ± 0.0"
