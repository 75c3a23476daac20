"""Pictures and files of a prediction: mask PNG, contour overlay, JSON and HTML report.

Everything is written at the input's own resolution. File names come from the caller (the CLI derives them from
the input's path relative to the folder it was given; the server never writes files), and are sanitised here so
that a name can never leave the output folder.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from rlar.errors import DataError

PRED_COLOUR = (255, 215, 0)  # predicted contour: yellow
TRUE_COLOUR = (0, 200, 255)  # reference contour (evaluate): cyan

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(name: str) -> str:
    """A file-name stem from an arbitrary input name (path separators and odd characters become '_')."""
    stem = _UNSAFE.sub("_", name).strip("._") or "image"
    return stem[:180]


def contour(mask: np.ndarray, thickness: int) -> np.ndarray:
    """Outline pixels of a bool mask, ``thickness`` pixels wide (drawn inside and outside the boundary)."""
    edge: np.ndarray = find_boundaries(mask.astype(bool), mode="inner")  # skimage/scipy are untyped
    if thickness > 1:
        edge = ndi.binary_dilation(edge, iterations=thickness - 1)
    return edge


def overlay(image: np.ndarray, mask: np.ndarray | None, truth: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3): the grey image with the predicted contour (yellow) and optionally the true one (cyan)."""
    grey = (np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    thickness = max(1, round(max(image.shape) / 300))
    if truth is not None and truth.any():
        rgb[contour(truth, thickness)] = TRUE_COLOUR
    if mask is not None and mask.any():
        rgb[contour(mask, thickness)] = PRED_COLOUR
    return rgb


def png_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 grey or RGB array as PNG bytes (for inline HTML images and downloads).

    zlib level 1: PNG is lossless at every level, and level 6 (Pillow's default) took 4x the time for files
    about 1.3x smaller here (benchmarks/predict_throughput.py profile: PNG encoding was a sixth of the pipeline).
    """
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def mask_png(mask: np.ndarray) -> np.ndarray:
    return mask.astype(np.uint8) * 255


def write_bytes(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise DataError(path, f"cannot write output ({type(exc).__name__}: {exc.strerror or exc})") from None


def write_json(path: Path, payload: dict[str, Any]) -> None:
    write_bytes(path, (json.dumps(payload, indent=1, allow_nan=False) + "\n").encode())
