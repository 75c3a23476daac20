"""Write small DICOM files for the tests (pydicom), with optional spacing, ultrasound regions and frames."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from tests._dicom_base import ultrasound_dataset


def write_dicom(path: Path, pixels: np.ndarray | None, *, spacing: tuple[float, float] | None = None,
                region_cm: tuple[float, float] | None = None, declared: tuple[int, int, int] | None = None,
                bits_stored: int | None = None) -> Path:
    """``pixels`` (H, W) or (F, H, W) unsigned integers; ``region_cm`` = (PhysicalDeltaX, PhysicalDeltaY) in cm;
    ``declared`` = (rows, columns, frames) to write a header that lies about its size; None pixels = no PixelData."""
    ds = ultrasound_dataset()
    array = None if pixels is None else np.asarray(pixels)
    shape = (1, *array.shape) if array is not None and array.ndim == 2 else (array.shape if array is not None else (1, 8, 8))
    frames, rows, cols = (declared[2], declared[0], declared[1]) if declared else shape
    ds.Rows, ds.Columns = rows, cols
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    container = 16 if array is not None and array.dtype == np.uint16 else 8
    ds.BitsAllocated = container
    ds.BitsStored = bits_stored or container
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if spacing is not None:
        ds.PixelSpacing = [f"{spacing[0]}", f"{spacing[1]}"]
    if region_cm is not None:
        region = Dataset()
        region.PhysicalUnitsXDirection = 3
        region.PhysicalUnitsYDirection = 3
        region.PhysicalDeltaX = region_cm[0]
        region.PhysicalDeltaY = region_cm[1]
        ds.SequenceOfUltrasoundRegions = Sequence([region])
    if array is not None:
        ds.PixelData = np.ascontiguousarray(array).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def kwargs(**values: Any) -> dict[str, Any]:
    return values
