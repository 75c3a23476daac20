"""Run a model over a dataset: per-image predictions, all metrics, and the model-selection score.

Predictions follow the :class:`~rlar.models.output.MultitaskOutput` contract: the nodule mask is
``sigmoid(mask_logits) > 0.5``, cleaned up as the run's :class:`~rlar.prediction.PredictionOptions` say (config
section ``prediction``: flip TTA, region clean-up), and the class probabilities are ``softmax(class_logits)``. A segmentation-only
model (``class_logits`` None) yields only segmentation metrics, a classification-only model (``mask_logits``
None) only classification metrics. Segmentation metrics are computed at the dataset's network resolution
(aspect-preserving resize + padding, see :mod:`rlar.data.dataset`), in pixels of that grid.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from rlar.data.dataset import ThyroidDataset, collate
from rlar.evaluation.metrics import aggregate_segmentation, classification_metrics, per_image_segmentation
from rlar.models import predict_batch
from rlar.prediction import PredictionOptions
from rlar.tasks import AUX_CLASSIFICATION_METRICS, TASKS, selection_headlines

#: The selection score's parts: the headline metric of every task that selects (rlar.tasks: dice, macro_f1).
HEADLINES: tuple[str, ...] = selection_headlines()

_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def class_names_of(dataset: ThyroidDataset, num_classes: int) -> list[str]:
    """The dataset's class names, or ``class_0 ..`` when it has no label space; checks the model's width."""
    label_space = getattr(dataset, "label_space", None)
    if label_space is None:
        return [f"class_{k}" for k in range(num_classes)]
    names = list(label_space.class_names)
    if len(names) != num_classes:
        raise ValueError(
            f"model predicts {num_classes} classes but the dataset's label space "
            f"({label_space.scale}, {label_space.task}) has {len(names)}: {names}"
        )
    return names


def prob_column(name: str) -> str:
    """Name of the probability column of class ``name`` in a :func:`predict` frame."""
    return f"prob_{name}"


def task_label_column(task: str) -> str:
    """Column of an optional task's true class index (-1 unknown) in a :func:`predict` frame."""
    return f"{task}_label"


def task_pred_column(task: str) -> str:
    """Column of an optional task's predicted class name in a :func:`predict` frame."""
    return f"{task}_pred"


def task_prob_column(task: str, class_name: str) -> str:
    """Column of an optional task's probability of class ``class_name`` in a :func:`predict` frame."""
    return f"{task}_prob_{class_name}"


def _add_task_columns(rows: list[dict[str, Any]], task_prob: Mapping[str, torch.Tensor],
                      batch: Mapping[str, Any]) -> None:
    """Add the optional tasks' columns of one batch (the ACR descriptors): true index, predicted word, probabilities.

    A source that does not record the descriptor gives no batch entry: every image is then unlabelled (-1)."""
    for name, prob in task_prob.items():
        classes = TASKS[name].classes
        probs = prob.float().cpu().numpy()
        key = TASKS[name].target_keys[0]
        truth = batch[key].numpy() if key in batch else np.full(len(probs), -1, dtype=np.int64)
        for row, p, y in zip(rows, probs, truth):
            row[task_label_column(name)] = int(y)
            row[task_pred_column(name)] = classes[int(p.argmax())]
            row.update({task_prob_column(name, c): float(v) for c, v in zip(classes, p)})


def task_metrics(frame: pd.DataFrame) -> dict[str, Any]:
    """``<task>_macro_f1``, ``<task>_auroc`` (one-vs-rest, macro over the classes present) and ``<task>_n``
    (labelled images) of every optional task in a :func:`predict` frame, on its labelled images only; NaN scores
    where none is labelled (AUROC also where only one class occurs)."""
    out: dict[str, Any] = {}
    for name, spec in TASKS.items():
        if not spec.optional or task_label_column(name) not in frame.columns:
            continue
        probs = frame[[task_prob_column(name, c) for c in spec.classes]].to_numpy(dtype=np.float64)
        scores = classification_metrics(probs, frame[task_label_column(name)].to_numpy(dtype=np.int64), spec.classes)
        values = {"macro_f1": scores["macro_f1"], "auroc": scores["auroc"], "n": scores["n_labelled"]}
        out.update({key: values[suffix] for key, suffix in zip(spec.metrics, AUX_CLASSIFICATION_METRICS)})
    return out


def _mask_filename(image_id: str) -> str:
    return _UNSAFE_FILENAME.sub("_", image_id) + ".png"


def _add_class_columns(rows: list[dict[str, Any]], probs: np.ndarray, class_names: Sequence[str]) -> None:
    """Add the classification columns of one batch to its rows: predicted class, name, confidence, probabilities."""
    pred = probs.argmax(axis=1)
    for row, p, k in zip(rows, probs, pred):
        row["pred_class"] = int(k)
        row["pred_class_name"] = class_names[k]
        row["confidence"] = float(p[k])
        row.update({prob_column(name): float(v) for name, v in zip(class_names, p)})


def _add_mask_columns(rows: list[dict[str, Any]], pred_masks: np.ndarray, batch: Mapping[str, Any],
                      keep_masks: bool) -> None:
    """Add the segmentation columns of one batch to its rows: scores where there is a ground truth (NaN
    elsewhere), ``has_truth``, ``empty_pred`` and, with ``keep_masks``, the predicted mask itself."""
    true_masks = batch["mask"][:, 0].numpy() > 0.5
    scores = per_image_segmentation(pred_masks, true_masks)
    annotated = batch["has_mask"].numpy()
    for j, row in enumerate(rows):
        has_truth = bool(annotated[j] and scores["has_truth"][j])
        row["has_truth"] = has_truth
        row["empty_pred"] = bool(scores["empty_pred"][j])
        for key in ("dice", "iou", "hd95_px"):
            row[key] = float(scores[key][j]) if has_truth else float("nan")
        if keep_masks:
            row["pred_mask"] = pred_masks[j]


def _write_masks(rows: list[dict[str, Any]], pred_masks: np.ndarray, out_dir: Path, written: dict[str, str]) -> None:
    """Write one batch's predicted masks as 0/255 PNGs named by image id; add ``pred_mask_path`` to the rows.

    ``written`` (file name -> image id, over the whole run) refuses two ids that map to one file name."""
    for j, row in enumerate(rows):
        name = _mask_filename(row["image_id"])
        if name in written:
            raise ValueError(f"image ids '{written[name]}' and '{row['image_id']}' map to the same file {name}")
        written[name] = row["image_id"]
        path = out_dir / name
        Image.fromarray(pred_masks[j].astype(np.uint8) * 255).save(path)
        row["pred_mask_path"] = str(path)


@torch.inference_mode()
def predict(
    model: nn.Module,
    dataset: ThyroidDataset,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    progress: bool = True,
    output_dir: str | Path | None = None,
    keep_masks: bool = True,
    num_workers: int = 0,
    options: PredictionOptions | None = None,
) -> pd.DataFrame:
    """Per-image predictions and per-image segmentation scores, in dataset order.

    Columns: ``image_id``, ``patient_id``, ``label`` (-1 unknown), ``has_mask``; with a classification head
    ``pred_class``, ``pred_class_name``, ``confidence`` and one ``prob_<class name>`` column per class; with a
    segmentation head ``dice``, ``iou``, ``hd95_px`` (NaN where the image is unannotated or its ground truth
    is empty), ``has_truth``, ``empty_pred``; for each optional task the model has (the ACR descriptors)
    ``<task>_label`` (-1 unknown), ``<task>_pred`` (class name) and ``<task>_prob_<class>``; plus ``pred_mask`` (bool (H, W) arrays) when ``keep_masks`` and
    ``pred_mask_path`` when ``output_dir`` is given (masks written there as 0/255 PNGs named by image id).
    ``options`` (default: none of them) adds flip TTA and the mask clean-up, as the run's config section
    ``prediction`` says. The model is run in eval mode and put back in its previous mode afterwards.
    """
    options = options or PredictionOptions()
    if getattr(dataset, "augment", False):
        warnings.warn("predict() was given a dataset with augment=True; metrics will be on augmented images",
                      stacklevel=2)
    out_dir = Path(output_dir) if output_dir is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=num_workers)
    device = torch.device(device)
    was_training = model.training
    model.eval()
    rows: list[dict[str, Any]] = []
    class_names: list[str] | None = None
    written: dict[str, str] = {}
    try:
        for batch in tqdm(loader, desc="predicting", disable=not progress, unit="batch"):
            prediction = predict_batch(model, batch["image"].to(device), tta=options.tta)
            class_prob, mask_prob = prediction.class_prob, prediction.mask_prob
            base = [
                {"image_id": i, "patient_id": p, "label": int(y), "has_mask": bool(m)}
                for i, p, y, m in zip(batch["image_id"], batch["patient_id"], batch["label"], batch["has_mask"])
            ]
            if class_prob is not None:
                probs = class_prob.float().cpu().numpy()
                if class_names is None:
                    class_names = class_names_of(dataset, probs.shape[1])
                _add_class_columns(base, probs, class_names)
            _add_task_columns(base, prediction.task_prob, batch)
            if mask_prob is not None:
                pred_masks = options.masks(mask_prob.float()[:, 0].cpu().numpy())
                _add_mask_columns(base, pred_masks, batch, keep_masks)
                if out_dir is not None:
                    _write_masks(base, pred_masks, out_dir, written)
            rows.extend(base)
    finally:
        model.train(was_training)
    return pd.DataFrame(rows)


#: Column order of ``predictions_test.csv`` (docs/interfaces.md); ``prob_<class>`` columns follow, then the rest.
PREDICTION_COLUMNS: tuple[str, ...] = ("image_id", "patient_id", "has_mask", "dice", "iou", "hd95_px", "label",
                                       "label_name", "pred", "pred_name")


def predictions_table(frame: pd.DataFrame, class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """A :func:`predict` frame in the per-image table format of the run folder (``predictions_test.csv``).

    Renames ``pred_class``/``pred_class_name`` to ``pred``/``pred_name``, adds ``label_name`` (empty where the
    label is unknown), drops in-memory masks, and orders the columns as :data:`PREDICTION_COLUMNS`, then
    ``prob_<class>``, then the remaining ones (``confidence``, ``has_truth``, ``empty_pred``).
    """
    table = frame.drop(columns=[c for c in ("pred_mask",) if c in frame.columns])
    table = table.rename(columns={"pred_class": "pred", "pred_class_name": "pred_name"})
    if class_names is None:
        class_names = [c[len("prob_"):] for c in table.columns if c.startswith("prob_")]
    if "label" in table.columns:
        names = list(class_names)
        table["label_name"] = [names[k] if 0 <= k < len(names) else "" for k in table["label"].astype(int)]
    first = [c for c in PREDICTION_COLUMNS if c in table.columns]
    probs = [c for c in table.columns if c.startswith("prob_")]
    return table[first + probs + [c for c in table.columns if c not in first and c not in probs]]


def metrics_from_predictions(
    frame: pd.DataFrame, class_names: Sequence[str] | None = None, n_bins: int = 15
) -> dict[str, Any]:
    """All metrics (flat dict) from a :func:`predict` frame; see :mod:`rlar.evaluation.metrics` conventions.

    Segmentation keys (when the frame has them): ``dice``, ``iou``, ``hd95_px`` (+ ``_median``), ``n_evaluated``,
    ``n_empty_truth``, ``n_false_positive_on_empty_truth``, ``n_missed``, ``n_unannotated``, ``hd95_worst_case``.
    Classification keys (when the frame has probability columns): those of :func:`classification_metrics`.
    Optional-task keys (when the frame has their columns): those of :func:`task_metrics`.
    ``n_images`` is always present. ``class_names`` defaults to the frame's ``prob_*`` columns in order.
    """
    metrics: dict[str, Any] = {"n_images": len(frame)}
    if "dice" in frame.columns:
        annotated = frame[frame["has_mask"]]
        seg = aggregate_segmentation(
            {key: annotated[key].to_numpy(dtype=np.float64) for key in ("dice", "iou", "hd95_px")}
            | {
                "has_truth": annotated["has_truth"].to_numpy(dtype=bool),
                "empty_pred": annotated["empty_pred"].to_numpy(dtype=bool),
            }
        )
        seg["n_unannotated"] = int((~frame["has_mask"]).sum())
        metrics.update(seg)
    if "pred_class" in frame.columns:
        if class_names is None:
            class_names = [c[len("prob_") :] for c in frame.columns if c.startswith("prob_")]
        probs = frame[[prob_column(name) for name in class_names]].to_numpy(dtype=np.float64)
        metrics.update(
            classification_metrics(probs, frame["label"].to_numpy(dtype=np.int64), class_names, n_bins=n_bins)
        )
    metrics.update(task_metrics(frame))
    return metrics


def evaluate(
    model: nn.Module,
    dataset: ThyroidDataset,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    progress: bool = True,
    output_dir: str | Path | None = None,
    n_bins: int = 15,
    num_workers: int = 0,
    options: PredictionOptions | None = None,
) -> dict[str, Any]:
    """Every segmentation and classification metric of ``model`` on ``dataset`` (flat dict).

    Runs :func:`predict` (masks are not kept in memory; they are written as PNGs when ``output_dir`` is given)
    and :func:`metrics_from_predictions`. Only the tasks the model has are reported.
    """
    frame = predict(
        model,
        dataset,
        batch_size=batch_size,
        device=device,
        progress=progress,
        output_dir=output_dir,
        keep_masks=False,
        num_workers=num_workers,
        options=options,
    )
    class_names = None
    if "pred_class" in frame.columns:
        n_classes = sum(c.startswith("prob_") for c in frame.columns)
        class_names = class_names_of(dataset, n_classes)
    return metrics_from_predictions(frame, class_names, n_bins=n_bins)


def validation_score(metrics: Mapping[str, Any]) -> float:
    """Model-selection score (higher is better): mean of Dice and macro-F1 when both exist, else the one present.

    A metric that is NaN (e.g. Dice on a validation fold without masks) counts as absent. Raises ValueError
    when neither is available, because a NaN score would silently never (or always) select a checkpoint.
    """
    parts = []
    for key in HEADLINES:
        value = metrics.get(key)
        if value is not None and isinstance(value, (int, float, np.floating)) and math.isfinite(float(value)):
            parts.append(float(value))
    if not parts:
        raise ValueError(
            "validation_score needs a finite 'dice' or 'macro_f1' in the metrics; got "
            f"dice={metrics.get('dice')!r}, macro_f1={metrics.get('macro_f1')!r}"
        )
    return float(np.mean(parts))
