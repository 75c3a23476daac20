"""Segmentation and classification metrics, and their mean +/- std over cross-validation folds.

Conventions (stated once here; reports and docstrings refer back to them):

Segmentation (per image, at the resolution the masks are given in; distances in pixels):
    * Dice, IoU and the 95th-percentile Hausdorff distance (HD95) come from MONAI (``compute_dice``,
      ``compute_iou``, ``compute_hausdorff_distance(percentile=95)``; HD95 is computed between mask edges).
    * An image whose ground truth is empty is *excluded* from all segmentation metrics (Dice is undefined
      there); how many were excluded is reported as ``n_empty_truth``, and how many of those received a
      non-empty prediction as ``n_false_positive_on_empty_truth``.
    * An empty prediction on an image that has a nodule is a miss: Dice 0, IoU 0 and HD95 set to the
      worst-case value :data:`WORST_CASE_HD95` = the image diagonal ``sqrt(H**2 + W**2)`` pixels, which is
      larger than any distance two pixels of the image can have. (Leaving it out, or using NaN, would reward
      a model for predicting nothing on hard images.) Their number is ``n_missed``.

Classification (over samples with a known label only; label -1 = unknown is dropped and counted):
    * accuracy, macro F1 / precision / recall (scikit-learn, over the classes that occur in the true or
      predicted labels: a class absent from both has an undefined F1 and is not averaged as 0),
      balanced accuracy (mean recall over the classes present in the truth), quadratic weighted kappa,
      confusion matrix over all classes (rows = truth, columns = prediction).
    * AUROC: binary -> ROC AUC of the positive-class probability; multiclass -> macro one-vs-rest over the
      classes *present* in the truth (a class with no positive sample has no ROC curve). The classes used
      are reported in ``auroc_classes`` and the ones left out in ``auroc_missing_classes``.
    * ECE: top-label expected calibration error with equal-width confidence bins (15 by default).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_iou
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

#: What HD95 is set to for an empty prediction on an image with a nodule (value: ``sqrt(H**2 + W**2)``).
WORST_CASE_HD95 = "image diagonal"

#: Per-image segmentation metric names (HD95 carries its unit in the name).
SEGMENTATION_KEYS: tuple[str, ...] = ("dice", "iou", "hd95_px")

#: Scalar classification metric names returned by :func:`classification_metrics`.
CLASSIFICATION_KEYS: tuple[str, ...] = (
    "accuracy",
    "macro_f1",
    "macro_precision",
    "macro_recall",
    "balanced_accuracy",
    "auroc",
    "qwk",
    "ece",
)


def image_diagonal(height: int, width: int) -> float:
    """The worst-case HD95 in pixels for an image of this size (see :data:`WORST_CASE_HD95`)."""
    return float(math.hypot(height, width))


# ----------------------------------------------------------------------------------------------- segmentation


def _as_bool_masks(masks: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    array = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]  # accept (N, 1, H, W) as produced by the network / collate
    if array.ndim != 3:
        raise ValueError(f"{name}: expected masks of shape (N, H, W) or (N, 1, H, W), got {array.shape}")
    if array.dtype != bool:
        values = np.unique(array)
        if not np.isin(values, (0, 1)).all():
            raise ValueError(f"{name}: expected binary masks (bool or 0/1), found values such as {values[:5]}")
        array = array.astype(bool)
    return array


def per_image_segmentation(
    pred_masks: np.ndarray | torch.Tensor, true_masks: np.ndarray | torch.Tensor, percentile: float = 95.0
) -> dict[str, np.ndarray]:
    """Dice, IoU and HD95 (pixels) for each image; NaN where the ground truth is empty (excluded).

    Returns arrays of length N: ``dice``, ``iou``, ``hd95_px`` (float64), ``has_truth`` and ``empty_pred`` (bool).
    An empty prediction on a nodule gives Dice 0, IoU 0, HD95 = image diagonal (:data:`WORST_CASE_HD95`).
    """
    pred = _as_bool_masks(pred_masks, "pred_masks")
    true = _as_bool_masks(true_masks, "true_masks")
    if pred.shape != true.shape:
        raise ValueError(f"pred_masks shape {pred.shape} differs from true_masks shape {true.shape}")
    n, height, width = true.shape
    has_truth: np.ndarray = np.asarray(true.reshape(n, -1).any(axis=1), dtype=bool)
    empty_pred: np.ndarray = ~np.asarray(pred.reshape(n, -1).any(axis=1), dtype=bool)
    dice = np.full(n, np.nan)
    iou = np.full(n, np.nan)
    hd95 = np.full(n, np.nan)
    if has_truth.any():
        # MONAI expects (B, C, H, W) one-hot tensors; one foreground channel, so include_background=True.
        p = torch.from_numpy(pred[has_truth, None].astype(np.float32))
        t = torch.from_numpy(true[has_truth, None].astype(np.float32))
        dice[has_truth] = compute_dice(p, t, include_background=True).numpy()[:, 0]
        iou[has_truth] = compute_iou(p, t, include_background=True).numpy()[:, 0]
        scored = has_truth & ~empty_pred
        if scored.any():
            keep = ~empty_pred[has_truth]
            with warnings.catch_warnings():
                # MONAI 1.6 warns about its own deprecated internal argument; nothing for the caller to act on.
                warnings.filterwarnings("ignore", category=FutureWarning, module=r"monai\.")
                hd = compute_hausdorff_distance(p[keep], t[keep], include_background=True, percentile=percentile)
            hd95[scored] = hd.numpy()[:, 0]
        hd95[has_truth & empty_pred] = image_diagonal(height, width)
    return {"dice": dice, "iou": iou, "hd95_px": hd95, "has_truth": has_truth, "empty_pred": empty_pred}


def aggregate_segmentation(per_image: Mapping[str, Any]) -> dict[str, Any]:
    """Means over the evaluated images (non-empty ground truth) and the counts the conventions require.

    ``per_image`` holds arrays ``dice``, ``iou``, ``hd95_px``, ``has_truth``, ``empty_pred`` as returned by
    :func:`per_image_segmentation` (or the matching columns of :func:`rlar.evaluation.evaluate.predict`).
    Means are NaN when no image has a nodule.
    """
    has_truth = np.asarray(per_image["has_truth"], dtype=bool)
    empty_pred = np.asarray(per_image["empty_pred"], dtype=bool)
    out: dict[str, Any] = {}
    for key in SEGMENTATION_KEYS:
        values = np.asarray(per_image[key], dtype=np.float64)[has_truth]
        out[key] = float(values.mean()) if values.size else float("nan")
        out[f"{key}_median"] = float(np.median(values)) if values.size else float("nan")
    out["n_evaluated"] = int(has_truth.sum())
    out["n_empty_truth"] = int((~has_truth).sum())
    out["n_false_positive_on_empty_truth"] = int((~has_truth & ~empty_pred).sum())
    out["n_missed"] = int((has_truth & empty_pred).sum())
    out["hd95_worst_case"] = WORST_CASE_HD95
    return out


def segmentation_metrics(
    pred_masks: np.ndarray | torch.Tensor, true_masks: np.ndarray | torch.Tensor, percentile: float = 95.0
) -> dict[str, Any]:
    """Per-image and mean Dice, IoU and HD95 (pixels) for bool masks (N, H, W) (see the module conventions).

    Returns the scalar means ``dice``, ``iou``, ``hd95_px`` (plus ``*_median``), the counts ``n_evaluated``,
    ``n_empty_truth``, ``n_false_positive_on_empty_truth``, ``n_missed``, the worst-case convention
    ``hd95_worst_case`` and ``per_image``: the arrays of :func:`per_image_segmentation` (NaN = excluded).
    """
    per_image = per_image_segmentation(pred_masks, true_masks, percentile=percentile)
    out = aggregate_segmentation(per_image)
    out["per_image"] = per_image
    return out


# --------------------------------------------------------------------------------------------- classification


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE: sum over equal-width confidence bins of (bin share) * |accuracy - mean confidence|.

    The confidence is the largest class probability; bins are (0, 1/n], (1/n, 2/n], ..., so a confidence of
    exactly 1 falls in the last bin. scikit-learn has no ECE, hence this short implementation.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if labels.size == 0:
        return float("nan")
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    # Bin index = ceil(conf * n) - 1 clipped, i.e. right-closed bins; conf 0 (impossible for a softmax) -> bin 0.
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def _auroc(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[float, list[int], np.ndarray]:
    """(macro AUROC, classes used, per-class AUROC with NaN for classes left out)."""
    per_class = np.full(num_classes, np.nan)
    present = sorted(int(c) for c in np.unique(labels))
    if len(present) < 2:
        return float("nan"), [], per_class  # no negative class: ROC undefined
    if num_classes == 2:
        auc = float(roc_auc_score(labels, probs[:, 1]))
        per_class[:] = auc  # the two one-vs-rest curves of a binary problem have the same area
        return auc, [0, 1], per_class
    for k in present:
        # One-vs-rest for class k: exactly what roc_auc_score(multi_class="ovr") averages, but restricted to the
        # classes that have positives here (sklearn raises when a column of the label set has none).
        per_class[k] = roc_auc_score(labels == k, probs[:, k])
    return float(np.nanmean(per_class[present])), present, per_class


def classification_metrics(
    probs: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    class_names: Sequence[str],
    n_bins: int = 15,
) -> dict[str, Any]:
    """Classification metrics over samples with a known label (label >= 0); see the module conventions.

    probs: (N, C) class probabilities (rows sum to 1). labels: (N,) int class indices, -1 = unknown.
    Returns the scalars of :data:`CLASSIFICATION_KEYS` (NaN when undefined, e.g. no labelled sample),
    ``n_labelled``, ``n_unlabelled``, ``class_names``, ``confusion_matrix`` (C, C) int array,
    ``f1_per_class`` and ``auroc_per_class`` (C,) arrays (NaN where undefined), ``auroc_classes`` and
    ``auroc_missing_classes`` (names).
    """
    probs = probs.detach().cpu().numpy() if isinstance(probs, torch.Tensor) else np.asarray(probs)
    labels = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    class_names = list(class_names)
    num_classes = len(class_names)
    if probs.ndim != 2 or probs.shape[1] != num_classes:
        raise ValueError(f"probs: expected shape (N, {num_classes}) for classes {class_names}, got {probs.shape}")
    if labels.shape != (probs.shape[0],):
        raise ValueError(f"labels: expected shape ({probs.shape[0]},), got {labels.shape}")
    labels = labels.astype(np.int64)
    if (labels >= num_classes).any() or (labels < -1).any():
        bad = labels[(labels >= num_classes) | (labels < -1)][0]
        raise ValueError(f"labels: value {bad} is not a class index 0..{num_classes - 1} or -1 (unknown)")
    known = labels >= 0
    probs, labels = probs[known].astype(np.float64), labels[known]
    out: dict[str, Any] = {
        "n_labelled": int(known.sum()),
        "n_unlabelled": int((~known).sum()),
        "class_names": class_names,
    }
    all_classes = list(range(num_classes))
    if labels.size == 0:
        out.update({key: float("nan") for key in CLASSIFICATION_KEYS})
        out["confusion_matrix"] = np.zeros((num_classes, num_classes), dtype=np.int64)
        out["f1_per_class"] = np.full(num_classes, np.nan)
        out["auroc_per_class"] = np.full(num_classes, np.nan)
        out["auroc_classes"], out["auroc_missing_classes"] = [], class_names
        return out

    preds = probs.argmax(axis=1)
    with warnings.catch_warnings():
        # sklearn warns when y_pred has classes absent from y_true (balanced accuracy) or kappa is 0/0;
        # those cases are covered by the stated conventions, so the warnings would only be noise.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        out["accuracy"] = float(accuracy_score(labels, preds))
        out["macro_f1"] = float(f1_score(labels, preds, average="macro", zero_division=0))
        out["macro_precision"] = float(precision_score(labels, preds, average="macro", zero_division=0))
        out["macro_recall"] = float(recall_score(labels, preds, average="macro", zero_division=0))
        out["balanced_accuracy"] = float(balanced_accuracy_score(labels, preds))
        out["qwk"] = float(cohen_kappa_score(labels, preds, weights="quadratic", labels=all_classes))
        f1_all = f1_score(labels, preds, average=None, labels=all_classes, zero_division=0).astype(np.float64)
    occurring = np.isin(all_classes, np.union1d(labels, preds))
    f1_all[~occurring] = np.nan
    out["f1_per_class"] = f1_all
    out["auroc"], used, out["auroc_per_class"] = _auroc(probs, labels, num_classes)
    out["auroc_classes"] = [class_names[k] for k in used]
    out["auroc_missing_classes"] = [name for k, name in enumerate(class_names) if k not in used]
    out["ece"] = expected_calibration_error(probs, labels, n_bins=n_bins)
    out["confusion_matrix"] = confusion_matrix(labels, preds, labels=all_classes)
    return out


# ------------------------------------------------------------------------------------------------------ folds


def _is_scalar_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def summarise_folds(fold_metrics: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation (ddof=1) over folds of every scalar numeric metric.

    Returns ``{metric: {"mean": m, "std": s, "n": folds used}}`` for keys that are numbers in at least one
    fold (arrays, names and other non-scalars are skipped). A fold where the metric is NaN (undefined, e.g.
    AUROC with one class present) is left out of that metric and ``n`` says how many folds remained.
    With a single usable fold, ``std`` is NaN (a spread cannot be estimated from one value).
    """
    keys: list[str] = []
    for fold in fold_metrics:
        for key, value in fold.items():
            if _is_scalar_number(value) and key not in keys:
                keys.append(key)
    summary: dict[str, dict[str, float]] = {}
    for key in keys:
        values = np.array(
            [float(fold[key]) for fold in fold_metrics if _is_scalar_number(fold.get(key))], dtype=np.float64
        )
        values = values[np.isfinite(values)]
        mean = float(values.mean()) if values.size else float("nan")
        std = float(values.std(ddof=1)) if values.size >= 2 else float("nan")
        summary[key] = {"mean": mean, "std": std, "n": int(values.size)}
    return summary


def format_mean_std(mean: float, std: float, digits: int = 3) -> str:
    """``"0.812 ± 0.034"``; a NaN std (single fold) prints as ``"0.812 ± n/a"``, a NaN mean as ``"n/a"``."""
    if mean is None or not math.isfinite(mean):
        return "n/a"
    if std is None or not math.isfinite(std):
        return f"{mean:.{digits}f} ± n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
