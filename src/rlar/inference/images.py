"""Read one input for prediction (a file path, raw uploaded bytes or an array) into grey frames with spacing.

Decoding is :func:`rlar.data.io.read_frames`, the decoder training uses, so a model sees the grey scale it was
trained on; it gives every frame of a multi-frame DICOM or TIFF clip, the physical pixel spacing from the DICOM
header, and checks the pixel cap from the header *before* any pixel is decoded (an upload of a few hundred
kilobytes can declare a 14000 x 14000 image). Bytes are read from memory, so the server never writes an upload
to disk. What this module adds is the prediction policy: only the formats of :data:`FORMATS`, recognised by
content (magic bytes), never by the file name; arrays as inputs; and a spacing the user gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlar.data.io import MAX_PIXELS, dicom_calibration, read_frames, read_header, sniff_format, to_grey_unit
from rlar.errors import DataError

#: Default cap on decoded values of one input, summed over frames: the data layer's one cap.
DEFAULT_MAX_PIXELS = MAX_PIXELS

#: Formats accepted for prediction, as recognised by :func:`sniff_format`.
FORMATS: tuple[str, ...] = ("png", "jpeg", "tiff", "dicom")

_HEAD_BYTES = 132  # the DICOM preamble (128) and its b"DICM" magic: enough to tell every format apart

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FORMATS",
    "InputImage",
    "declared_pixels",
    "dicom_spacing",
    "read_input",
    "sniff_format",
]


@dataclass
class InputImage:
    """Grey frames of one input and what is known of its geometry.

    frames: float32 (H, W) arrays in [0, 1], one per frame (a still image has one).
    spacing_mm: (row, column) pixel spacing in millimetres, or None when the input does not declare it.
    spacing_source: where the spacing came from ("PixelSpacing", "SequenceOfUltrasoundRegions", "given") or "none".
    kind: the recognised format, or "array".
    notes: facts worth telling the user (e.g. unequal row/column spacing).
    """

    name: str
    frames: list[np.ndarray]
    spacing_mm: tuple[float, float] | None = None
    spacing_source: str = "none"
    kind: str = "array"
    notes: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.frames[0].shape[0]), int(self.frames[0].shape[1]))


def dicom_spacing(header: Any) -> tuple[tuple[float, float] | None, str, list[str]]:
    """(row, column) spacing in mm, its origin and notes: :func:`rlar.data.io.dicom_calibration` (kept name)."""
    return dicom_calibration(header)


def read_input(
    source: str | Path | bytes | np.ndarray,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    spacing_mm: tuple[float, float] | None = None,
) -> InputImage:
    """Decode a path, in-memory file bytes or an array into an :class:`InputImage`.

    Args:
        source: a file path, the bytes of a file (uploads), or a grey/RGB array (H, W[, C]) or frames (F, H, W).
        name: how to call the input in messages and reports (default: the path, or "upload"/"array").
        max_pixels: refuse inputs whose header declares more pixel values than this (all frames together),
            before decoding them.
        spacing_mm: (row, column) spacing to use for arrays or images whose header has none.

    Raises:
        DataError naming the input: unknown format, truncated or corrupt data, too many pixels, DICOM without
        pixel data.
    """
    if isinstance(source, np.ndarray):
        image = _from_array(source, name or "array")
    else:
        label = name or ("upload" if isinstance(source, bytes | bytearray) else str(source))
        _check_format(source, label)
        decoded = read_frames(source, name=label, max_pixels=max_pixels, all_frames=True)
        image = InputImage(name=label, frames=decoded.frames, spacing_mm=decoded.spacing_mm,
                           spacing_source=decoded.spacing_source, kind=decoded.format, notes=decoded.notes)
    if spacing_mm is not None and image.spacing_mm is None:
        _check_spacing(spacing_mm, image.name)
        image.spacing_mm = (float(spacing_mm[0]), float(spacing_mm[1]))
        image.spacing_source = "given"
    return image


def declared_pixels(data: bytes, name: str = "upload") -> int:
    """Pixel values the header of ``data`` declares (width x height x samples x frames), without decoding pixels.

    The count :func:`read_input` checks against its ``max_pixels`` (:func:`rlar.data.io.check_pixel_budget`), so
    an upload that passes this check is never refused by the decoder for its size. Grey images: their pixels.
    """
    _check_format(data, name)
    return read_header(data, name=name).total_values  # every frame by its own header (TIFF pages differ)


def _check_format(source: str | Path | bytes, label: str) -> None:
    """Refuse inputs that are none of :data:`FORMATS` by content (missing or empty files: the decoder's message)."""
    if isinstance(source, bytes | bytearray):
        head = bytes(source[:_HEAD_BYTES])
    else:
        path = Path(source)
        if not path.is_file() or path.stat().st_size == 0:
            return  # read_frames names the file with "file not found" / "zero-byte file"
        try:
            with path.open("rb") as handle:
                head = handle.read(_HEAD_BYTES)
        except OSError as exc:
            raise DataError(label, f"cannot read file ({type(exc).__name__}: {exc})") from None
    if head and sniff_format(head) not in FORMATS:
        raise DataError(label, "not a PNG, JPEG, TIFF or DICOM file (content not recognised; accepted: "
                               f"{', '.join(FORMATS)})")


def _check_spacing(spacing: tuple[float, float], item: str) -> None:
    if len(spacing) != 2 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise DataError(item, f"pixel spacing must be two positive millimetre values, got {spacing}")


def _from_array(array: np.ndarray, name: str) -> InputImage:
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] not in (2, 3, 4):
        frames = [to_grey_unit(frame, name) for frame in array]
    else:
        frames = [to_grey_unit(array, name)]
    if not frames or min(frames[0].shape) < 1:
        raise DataError(name, f"empty image array of shape {array.shape}")
    return InputImage(name=name, frames=frames, kind="array")
