"""From a model's probabilities to the reported prediction: the mask threshold, flip test-time augmentation and
the clean-up of small regions, as one validated set of options (config section ``prediction``) that validation,
test scoring and the inference :class:`~rlar.inference.Predictor` all apply, so a model is scored the way it is
used. Like :mod:`rlar.tasks` this module is a bottom-layer fact and imports no torch (the config reads it).

Region clean-up modes (8-connected regions of the thresholded mask):

* ``none``: the thresholded mask as it is.
* ``largest``: the largest region only (one nodule per image).
* ``relative``: every region whose area is at least ``min_region_fraction`` of the largest one. DDTI shows some
  nodules in two panes (transverse and longitudinal) side by side, two regions of similar size that ``largest``
  would halve; ``relative`` still drops specks.

Which mode is better is a measured choice per data set (docs/recipes.md); the default changes nothing.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

#: Probability above which a pixel is nodule (evaluation and inference).
MASK_THRESHOLD = 0.5

MaskPostprocess = Literal["none", "largest", "relative"]

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


class PredictionOptions(BaseModel):
    """How a trained model's outputs become the reported prediction (config section ``prediction``).

    tta: average the probabilities of the image and its horizontal mirror (``rlar.models.predict_batch``).
    mask_postprocess: region clean-up of the thresholded mask (module docstring).
    min_region_fraction: with ``relative``, the smallest kept region as a fraction of the largest one's area.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    tta: bool = Field(default=False, description="horizontal-flip test-time augmentation (validation, test, inference)")
    mask_postprocess: MaskPostprocess = Field(
        default="none", description="region clean-up: none, largest (one region), relative (regions >= a fraction)"
    )
    min_region_fraction: float = Field(
        default=0.2, gt=0.0, le=1.0, description="with 'relative': smallest kept region / largest region"
    )

    def mask(self, mask_prob: np.ndarray) -> np.ndarray:
        """The reported boolean mask of one image's (H, W) probabilities."""
        return clean_mask(np.asarray(mask_prob) > MASK_THRESHOLD, self.mask_postprocess, self.min_region_fraction)

    def masks(self, mask_probs: np.ndarray) -> np.ndarray:
        """:meth:`mask` of every image of a (B, H, W) stack."""
        return np.stack([self.mask(p) for p in mask_probs]) if len(mask_probs) else np.asarray(mask_probs) > MASK_THRESHOLD


def clean_mask(mask: np.ndarray, mode: MaskPostprocess, min_region_fraction: float = 0.2) -> np.ndarray:
    """Apply a region clean-up ``mode`` to one boolean (H, W) mask (a new array; an empty mask stays empty)."""
    mask = np.asarray(mask, dtype=bool)
    if mode == "none":
        return mask.copy()
    if mode not in ("largest", "relative"):
        raise ValueError(f"unknown mask post-processing '{mode}' (choose none, largest or relative)")
    from scipy import ndimage  # here, so that importing the config stays light

    labels: np.ndarray  # scipy is untyped
    labels, n_regions = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    if n_regions <= 1:
        return mask.copy()
    areas = np.bincount(labels.ravel())[1:]
    if mode == "largest":
        # Ties: the first region in raster order, so the result is deterministic.
        return np.asarray(labels == int(np.argmax(areas)) + 1)
    keep = np.flatnonzero(areas >= min_region_fraction * areas.max()) + 1
    return np.isin(labels, keep)


__all__ = ["MASK_THRESHOLD", "MaskPostprocess", "PredictionOptions", "clean_mask"]
