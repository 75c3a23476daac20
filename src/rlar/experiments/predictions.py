"""Per-image predictions of a finished run on its test fold, on an external source, or against phantom truth.

Everything the report computes comes from per-image rows in the run-folder layout of docs/interfaces.md (``predictions_test.csv``)::

    image_id, patient_id, has_mask, dice, iou, hd95_px, label, label_name, pred, pred_name, prob_<class>...

plus, where they apply, ``label_binary`` (low/high risk of the image's own level, -1 unknown; lets a model trained
on one TI-RADS scale be scored on a source graded on another) and ``clip_id`` (cine sources: the nodule a frame
belongs to). The training run writes ``predictions_test.csv`` itself (docs/interfaces.md); :func:`ensure_test_predictions`
only fills it in for run folders written before that (it scores the run's chosen checkpoint on its test ids).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rlar.data.labels import HIGH_RISK_LEVELS, SCALE_LEVELS, UNKNOWN, LabelSpace
from rlar.errors import DataError
from rlar.runs import (
    EVAL_PREDICTIONS_FILE,
    EXTERNAL_DIR,
    NODULE_PREDICTIONS_FILE,
    PREDICTIONS_FILE,
    SPLITS_FILE,
    TRUTH_DIR,
    chosen_checkpoint,
    read_config_dict,
)

# The run-folder names live in rlar.runs: ``predictions_test.csv``; ``truth/`` (scores against the phantom's truth,
# annotator study) and ``external/<name>/`` (one per external source), each with a ``predictions.csv``.


def binary_label(level: str | None, scale: str | None) -> int:
    """1 for a high-risk level, 0 for a low-risk one, -1 when unknown (see :mod:`rlar.data.labels`)."""
    if level is None or scale is None or level not in SCALE_LEVELS.get(scale, ()):
        return UNKNOWN
    return int(level in HIGH_RISK_LEVELS[scale])


def predict_images(checkpoint: Path, source_name: str, root: str | None, options: dict[str, Any],
                   image_ids: list[str] | None, device: str = "cpu") -> pd.DataFrame:
    """Score ``checkpoint`` on ``image_ids`` of a source (all when None); rows in the layout above."""
    from rlar.data.dataset import ThyroidDataset
    from rlar.data.sources import open_source
    from rlar.evaluation.evaluate import predict
    from rlar.inference.loading import load_trained_model

    trained = load_trained_model(checkpoint, device=device)
    cfg, space = trained.config, trained.label_space
    source = open_source(source_name, root, **options)
    scale = source.scale or space.scale
    same_scale = scale == space.scale
    # Another scale: the model's classes are not the source's levels; predict without labels, then attach them.
    dataset = ThyroidDataset(source, image_ids, image_size=(int(cfg.data.image_size[0]), int(cfg.data.image_size[1])),
                             label_space=space if same_scale else None, augment=False)
    frame = predict(trained.model, dataset, device=device, progress=False, keep_masks=False, options=cfg.prediction)
    infos = {info.image_id: info for info in source.infos}
    names = list(space.class_names)
    if not same_scale:
        frame = frame.rename(columns={f"prob_class_{k}": f"prob_{n}" for k, n in enumerate(names)})
        if "pred_class" in frame.columns:
            frame["pred_class_name"] = [names[k] for k in frame["pred_class"]]
    return to_c6(frame, infos, space, scale)


def to_c6(frame: pd.DataFrame, infos: dict[str, Any], space: LabelSpace, scale: str) -> pd.DataFrame:
    """``rlar.evaluation.predict`` columns renamed to the C6 layout, with label names and binary labels."""
    out = frame.drop(columns=[c for c in ("pred_mask", "pred_mask_path", "confidence") if c in frame.columns])
    out = out.rename(columns={"pred_class": "pred", "pred_class_name": "pred_name"})
    levels = [infos[i].tirads for i in out["image_id"]]
    if space.task == "multiclass" and scale == space.scale:
        out["label_name"] = [lv if lv is not None else "" for lv in levels]
    else:
        out["label_name"] = [space.class_names[y] if y >= 0 else "" for y in out["label"]]
    out["label_binary"] = [binary_label(lv, scale) for lv in levels]
    clips = [infos[i].clip_id for i in out["image_id"]]
    if any(c is not None for c in clips):
        out["clip_id"] = [c if c is not None else "" for c in clips]
    first = ["image_id", "patient_id", "has_mask", "dice", "iou", "hd95_px", "label", "label_name", "label_binary",
             "pred", "pred_name"]
    ordered = [c for c in first if c in out.columns] + [c for c in out.columns if c not in first]
    return out[ordered]


def fold_ids(run_dir: Path, fold: int, side: str = "test") -> list[str]:
    """The image ids of one side of the run's fold (its own splits.json); legacy two-key files use 'val'."""
    from rlar.data.splits import load_splits

    folds = load_splits(run_dir / SPLITS_FILE)
    entry = folds[fold]
    if side not in entry or not entry[side]:
        if side == "test" and entry.get("val"):
            return list(entry["val"])  # written before the held-out protocol: the only held-out side
        raise DataError(run_dir / SPLITS_FILE, f"fold {fold} has no '{side}' images")
    return list(entry[side])


def _run_config(run_dir: Path) -> Any:
    """The run's resolved config (``config.yaml`` is already resolved: validated as is, no size applied)."""
    from rlar.training.config import validate_config

    return validate_config(read_config_dict(run_dir))


def ensure_test_predictions(run_dir: Path, device: str = "cpu") -> Path:
    """``predictions_test.csv`` of a finished run, computed from its checkpoint if the run did not write it."""
    path = run_dir / PREDICTIONS_FILE
    if path.is_file():
        return path
    cfg = _run_config(run_dir)
    frame = predict_images(chosen_checkpoint(run_dir), cfg.data.source, cfg.data.root, dict(cfg.data.options),
                           fold_ids(run_dir, cfg.data.fold), device)
    frame.to_csv(path, index=False)
    return path


def nodule_level(frame: pd.DataFrame) -> pd.DataFrame:
    """Frame rows aggregated per nodule (``clip_id``): mean probabilities and segmentation scores, the clip's label.

    The predicted class is the arg-max of the mean probabilities (frame probabilities averaged, as a reader
    watching the clip would integrate the frames).
    """
    if "clip_id" not in frame.columns:
        raise DataError("predictions", "no clip_id column: nodule-level results need a cine source")
    probs = [c for c in frame.columns if c.startswith("prob_")]
    numeric = [c for c in ("dice", "iou", "hd95_px", *probs) if c in frame.columns]
    grouped = frame.groupby("clip_id", sort=True)
    out = grouped[numeric].mean()
    first = grouped[["patient_id", "label", "label_name", "label_binary"]].first()
    out = first.join(out).reset_index().rename(columns={"clip_id": "image_id"})
    out["has_mask"] = grouped["has_mask"].any().to_numpy()
    if probs:
        matrix = out[probs].to_numpy(dtype=np.float64)
        out["pred"] = matrix.argmax(axis=1)
        out["pred_name"] = [probs[k][len("prob_"):] for k in out["pred"]]
    return out


def evaluate_external(run_dir: Path, name: str, source: str, root: str | None, options: dict[str, Any],
                      device: str = "cpu") -> Path:
    """Score the run's model on every image of an external source: ``external/<name>/predictions.csv`` (frames),
    and ``nodule_predictions.csv`` for cine sources; returns the folder. Skips work already done."""
    out = run_dir / EXTERNAL_DIR / name
    path = out / EVAL_PREDICTIONS_FILE
    if not path.is_file():
        frame = predict_images(chosen_checkpoint(run_dir), source, root, options, None, device)
        out.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
        if "clip_id" in frame.columns:
            nodule_level(frame).to_csv(out / NODULE_PREDICTIONS_FILE, index=False)
    return out


def evaluate_truth(run_dir: Path, device: str = "cpu") -> Path:
    """Score the run's test images against the phantom's true masks and levels: ``truth/predictions.csv``."""
    out = run_dir / TRUTH_DIR
    path = out / EVAL_PREDICTIONS_FILE
    if path.is_file():
        return out
    cfg = _run_config(run_dir)
    if cfg.data.source != "phantom":
        raise DataError(run_dir, f"truth is known only for the phantom source, not '{cfg.data.source}'")
    options = {**cfg.data.options, "mask_from": "truth", "label_from": "truth"}
    frame = predict_images(chosen_checkpoint(run_dir), "phantom", None, options, fold_ids(run_dir, cfg.data.fold),
                           device)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return out


__all__ = ["EXTERNAL_DIR", "TRUTH_DIR", "binary_label", "chosen_checkpoint",
           "ensure_test_predictions", "evaluate_external", "evaluate_truth", "fold_ids", "nodule_level",
           "predict_images", "to_c6"]
