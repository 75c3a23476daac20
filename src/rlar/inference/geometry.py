"""The image -> network-input mapping used in training, and its inverse for masks.

Training inputs went through (1) the source's scan-area crop (only for sources that crop, e.g. DDTI), (2) an
aspect-preserving resize and (3) symmetric zero padding (:mod:`rlar.data.dataset`). Prediction must apply the
same steps, or the model sees a different image than it learned on, and must invert them so that masks and
overlays come back at the input's own resolution and frame. :class:`Geometry` records every step, and the crop
box goes into the JSON report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rlar.data.crop import Box, CropParams, scan_area_box
from rlar.data.dataset import prepare_image
from rlar.errors import ConfigError


@dataclass(frozen=True)
class Geometry:
    """How one frame was mapped to the network input (all boxes half-open, in pixels)."""

    original_shape: tuple[int, int]  # (H, W) of the input frame
    crop_box: Box  # (top, bottom, left, right) kept by the scan-area crop (the full frame when not cropping)
    resized_shape: tuple[int, int]  # (h, w) of the cropped frame after the aspect-preserving resize
    pad: tuple[int, int]  # (top, left) zero padding up to the network size
    network_shape: tuple[int, int]  # (H, W) of the network input

    def to_json(self) -> dict[str, Any]:
        top, bottom, left, right = self.crop_box
        return {
            "original_shape_hw": list(self.original_shape),
            "crop_box": {"top": top, "bottom": bottom, "left": left, "right": right},
            "network_shape_hw": list(self.network_shape),
            "resized_shape_hw": list(self.resized_shape),
            "pad_top_left": list(self.pad),
        }

    def restore(self, prob: np.ndarray) -> np.ndarray:
        """A network-size probability map (H, W) back at the input's resolution and frame (zeros outside the crop)."""
        if prob.shape != self.network_shape:
            raise ValueError(f"expected a {self.network_shape} map, got {prob.shape}")
        top_pad, left_pad = self.pad
        h, w = self.resized_shape
        inner = torch.from_numpy(np.ascontiguousarray(prob[top_pad : top_pad + h, left_pad : left_pad + w], dtype=np.float32))
        top, bottom, left, right = self.crop_box
        scaled = F.interpolate(inner[None, None], size=(bottom - top, right - left), mode="bilinear", align_corners=False)
        out = np.zeros(self.original_shape, dtype=np.float32)
        out[top:bottom, left:right] = scaled[0, 0].numpy()
        return out


def source_crops(source: str, options: dict[str, Any]) -> bool:
    """Whether the training source cropped images to the scan area: its validated ``crop`` option.

    Read from the source's option model (:func:`rlar.data.sources.validate_source_options`), whose default is
    the source's own, so a new source with a ``crop`` option is handled without a change here. Unknown sources
    and sources without a ``crop`` option mean no crop; a ``crop`` value the source refuses is a ConfigError
    (``data.options.crop``) rather than a silent guess. Only ``crop`` is validated: the other options of the
    training run do not matter here.
    """
    from rlar.data.sources import get_source_class, validate_source_options

    try:
        model = get_source_class(source).options_model()
    except ConfigError:
        return False
    if "crop" not in model.model_fields:
        return False
    given = {"crop": options["crop"]} if "crop" in options else {}
    return bool(validate_source_options(source, given).model_dump()["crop"])


def prepare(image: np.ndarray, network_shape: tuple[int, int], crop: bool,
            crop_params: CropParams | None = None) -> tuple[np.ndarray, Geometry]:
    """The network input (1, H, W) float32 of a grey frame (H0, W0) in [0, 1], and the geometry to invert it.

    The scan-area crop (when the training source cropped), then :func:`rlar.data.dataset.prepare_image`: the
    very resize, padding and 8-bit quantisation :class:`rlar.data.dataset.ThyroidDataset` applies in training.
    """
    if image.ndim != 2 or min(image.shape) < 1:
        raise ValueError(f"expected a non-empty 2D grey frame, got shape {image.shape}")
    original = (int(image.shape[0]), int(image.shape[1]))
    box: Box = scan_area_box(image, crop_params) if crop else (0, original[0], 0, original[1])
    top, bottom, left, right = box
    network = (int(network_shape[0]), int(network_shape[1]))
    quantised, _, placement = prepare_image(image[top:bottom, left:right], None, network)
    array = (quantised.float() / 255.0).numpy()
    geometry = Geometry(original, box, placement.resized_shape, placement.pad, network)
    return array.astype(np.float32, copy=False), geometry
