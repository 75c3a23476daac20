"""Score a model on the images of a data source through the model's own preprocessing (``rlar evaluate``).

A source prepares its images as its adapter says (the folder source does not crop; DDTI crops with the reference
mask's box joined in). When that differs from what the model was trained on, the model's stored
:class:`~rlar.training.preprocessing.Preprocessing` wins: each image is decoded uncropped, predicted with
:func:`rlar.inference.pipeline.predict_pixels` (exactly what ``rlar predict`` does with the same file) and scored
against its reference mask at the image's own resolution. Rows have the columns of
:func:`rlar.evaluation.evaluate.predict`, so the same metrics and tables follow.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm.auto import tqdm

from rlar.data.dataset import ThyroidDataset
from rlar.data.labels import LabelSpace
from rlar.data.sources.base import Source
from rlar.errors import DataError
from rlar.evaluation.evaluate import prob_column
from rlar.evaluation.metrics import per_image_segmentation
from rlar.inference.loading import TrainedModel
from rlar.inference.outputs import safe_stem
from rlar.inference.pipeline import predict_pixels
from rlar.prediction import PredictionOptions


def predict_source(members: Sequence[TrainedModel], source: Source, image_ids: Sequence[str] | None,
                   label_space: LabelSpace | None, options: PredictionOptions, device: str | torch.device = "cpu",
                   batch_size: int = 16, progress: bool = True, mask_dir: Path | None = None,
                   keep_masks: bool = False) -> tuple[pd.DataFrame, list[Any]]:
    """Per-image rows (see the module docstring) and the skipped items (images that could not be decoded).

    With ``keep_masks`` the rows also hold ``pred_mask``, ``image`` and ``true_mask`` (arrays at the image's
    resolution, for overlays); ``mask_dir`` receives the predicted masks as 0/255 PNGs named by image id.
    """
    labels = ThyroidDataset(source, image_ids, image_size=members[0].prep.image_size, label_space=label_space,
                            cache_in_memory=False)
    position = {info.image_id: i for i, info in enumerate(source.infos)}
    names = list(members[0].label_space.class_names)  # the model's classes, whatever the source is labelled on
    rows: list[dict[str, Any]] = []
    skipped: list[Any] = []
    if mask_dir is not None:
        mask_dir.mkdir(parents=True, exist_ok=True)
    ids = list(labels.image_ids)
    for start in tqdm(range(0, len(ids), batch_size), desc="predicting", disable=not progress, unit="batch"):
        chunk = []
        for k in range(start, min(start + batch_size, len(ids))):
            try:
                chunk.append((k, source[position[ids[k]]]))
            except DataError as err:
                skipped.append(err)
        if not chunk:
            continue
        predicted = predict_pixels([m.model for m in members], [np.asarray(s.image, np.float32) for _, s in chunk],
                                   members[0].prep, options, device)
        for (k, sample), p in zip(chunk, predicted):
            info = sample.info
            row: dict[str, Any] = {"image_id": info.image_id, "patient_id": info.patient_id,
                                   "label": int(labels.labels[k]), "has_mask": sample.mask is not None}
            if p.class_prob is not None:
                j = int(np.argmax(p.class_prob))
                row.update(pred_class=j, pred_class_name=names[j], confidence=float(p.class_prob[j]))
                row.update({prob_column(n): float(v) for n, v in zip(names, p.class_prob)})
            if p.mask is not None:
                truth = sample.mask if sample.mask is not None else np.zeros_like(p.mask)
                scores = per_image_segmentation(p.mask[None], truth[None])
                has_truth = bool(sample.mask is not None and scores["has_truth"][0])
                row["has_truth"] = has_truth
                row["empty_pred"] = bool(scores["empty_pred"][0])
                for key in ("dice", "iou", "hd95_px"):
                    row[key] = float(scores[key][0]) if has_truth else float("nan")
                if keep_masks:
                    row.update(pred_mask=p.mask, image=sample.image, true_mask=sample.mask)
                if mask_dir is not None:
                    path = mask_dir / f"{safe_stem(info.image_id)}.png"
                    Image.fromarray(p.mask.astype(np.uint8) * 255).save(path)
                    row["pred_mask_path"] = str(path)
            rows.append(row)
    return pd.DataFrame(rows), skipped


__all__ = ["predict_source"]
