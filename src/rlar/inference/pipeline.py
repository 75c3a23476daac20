"""The one prediction function from pixels to probabilities and masks, shared by every consumer of a model.

``rlar predict``, ``rlar serve`` (through :class:`rlar.inference.Predictor`) and ``rlar evaluate`` on a source whose
own preprocessing differs from the model's call :func:`predict_pixels`, one forward pass per member for every head,
the optional (ACR descriptor) heads included (the report's overlay figure and the
training's own evaluation predict the run's cached network inputs through :func:`rlar.evaluation.predict` with the
same stored prediction options):
grey frames at their own resolution in, the model's stored :class:`~rlar.training.preprocessing.Preprocessing`
applied (scan-area crop from the pixels alone, aspect-preserving resize, padding, 8-bit quantisation:
:func:`rlar.inference.geometry.prepare`), :func:`rlar.models.predict_batch` on every member (mean of
probabilities), the map brought back to the input's frame and thresholded and cleaned up as the run's
``prediction`` section says. So two commands given the same pixels give the same probabilities and masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from rlar.inference.geometry import Geometry, prepare
from rlar.models import predict_batch
from rlar.prediction import PredictionOptions
from rlar.training.preprocessing import Preprocessing


@dataclass
class PixelPrediction:
    """One frame's prediction at the input's resolution.

    mask_prob / mask: (H, W) float32 probability and bool mask (None without a segmentation head).
    class_prob: (C,) float64 mean class probabilities (None without a classifier).
    h_tirads: one (13,) array per member (None where the member has no guided embedding).
    task_prob: optional task (ACR descriptor) -> (K,) float64 member-mean probabilities; empty without such heads.
    """

    mask_prob: np.ndarray | None
    mask: np.ndarray | None
    class_prob: np.ndarray | None
    h_tirads: list[np.ndarray | None]
    geometry: Geometry
    task_prob: dict[str, np.ndarray] = field(default_factory=dict)


def prepare_frames(frames: Sequence[np.ndarray], preprocessing: Preprocessing,
                   crop: bool | None = None) -> list[tuple[np.ndarray, Geometry]]:
    """Each grey frame as the network input the model was trained on, with the geometry to invert it."""
    do_crop = preprocessing.crop if crop is None else bool(crop)
    return [prepare(frame, preprocessing.image_size, do_crop, preprocessing.crop_params) for frame in frames]


@torch.no_grad()
def predict_pixels(models: Sequence[nn.Module], frames: Sequence[np.ndarray], preprocessing: Preprocessing,
                   options: PredictionOptions, device: str | torch.device = "cpu",
                   crop: bool | None = None) -> list[PixelPrediction]:
    """Predict grey frames (H, W) in [0, 1] with the mean of ``models`` (see the module docstring).

    ``crop`` overrides the stored crop policy (``rlar predict --crop on|off``); None follows the model.
    """
    if not frames:
        return []
    prepared = prepare_frames(frames, preprocessing, crop)
    batch = torch.from_numpy(np.stack([array for array, _ in prepared])).to(device)
    mask_sum: torch.Tensor | None = None
    prob_sum: torch.Tensor | None = None
    task_sums: dict[str, torch.Tensor] = {}
    embeddings: list[np.ndarray | None] = []
    for model in models:
        if model.training:  # Module.eval() walks every submodule: ~5 ms a call on EfficientNet, so only when needed
            model.eval()
        out = predict_batch(model, batch, tta=options.tta)
        if out.mask_prob is not None:
            mask_sum = out.mask_prob if mask_sum is None else mask_sum + out.mask_prob
        if out.class_prob is not None:
            prob_sum = out.class_prob if prob_sum is None else prob_sum + out.class_prob
        for name, prob in out.task_prob.items():
            task_sums[name] = prob if name not in task_sums else task_sums[name] + prob
        embeddings.append(out.h_tirads.cpu().numpy() if out.h_tirads is not None else None)
    n = len(models)
    masks = (mask_sum[:, 0] / n).cpu().numpy() if mask_sum is not None else None
    probs = (prob_sum / n).cpu().numpy().astype(np.float64) if prob_sum is not None else None
    task_probs = {name: (total / n).cpu().numpy().astype(np.float64) for name, total in task_sums.items()}
    results = []
    for i, (_, geometry) in enumerate(prepared):
        mask_prob = mask = None
        if masks is not None:
            mask_prob = geometry.restore(masks[i])
            mask = options.mask(mask_prob)
        results.append(PixelPrediction(mask_prob, mask, probs[i] if probs is not None else None,
                                       [h[i] if h is not None else None for h in embeddings], geometry,
                                       {name: prob[i] for name, prob in task_probs.items()}))
    return results


__all__ = ["PixelPrediction", "predict_pixels", "prepare_frames"]
