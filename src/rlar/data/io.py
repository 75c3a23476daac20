"""Decode image files (PNG, JPEG, TIFF, DICOM) to float32 grey in [0, 1], with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from rlar.errors import DataError

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm")


def to_grey_unit(array: np.ndarray, item: str | Path) -> np.ndarray:
    """Convert an integer/float array (H,W), (H,W,3) or (H,W,4) to float32 grey in [0, 1].

    Colour is averaged (ultrasound is grey; colour Doppler overlays are out of scope); alpha is dropped.
    Integer images are scaled by their dtype's range (8- or 16-bit), floats by their own min/max.
    """
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = array[..., :3].astype(np.float64).mean(axis=-1) if np.issubdtype(array.dtype, np.floating) else (
            array[..., :3].astype(np.float64).mean(axis=-1).astype(array.dtype)
        )
    if array.ndim != 2:
        raise DataError(item, f"expected a 2D grey or RGB(A) image, got array of shape {array.shape}")
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        lo = 0 if info.min == 0 else info.min
        out = (array.astype(np.float64) - lo) / float(info.max - lo)
        if array.dtype in (np.uint16, np.int16, np.uint32, np.int32) and array.max() <= 4095 and array.max() > 255:
            # 12-bit data stored in 16-bit containers (common in DICOM/TIFF): scale by the used range.
            out = array.astype(np.float64) / 4095.0
    elif np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.all():
            raise DataError(item, "image contains NaN or infinite values")
        lo, hi = float(array.min()), float(array.max())
        out = (array - lo) / (hi - lo) if hi > lo else np.zeros_like(array, dtype=np.float64)
    elif array.dtype == bool:
        out = array.astype(np.float64)
    else:
        raise DataError(item, f"unsupported pixel type {array.dtype}")
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def read_array(path: str | Path) -> np.ndarray:
    """Read the raw pixel array of an image file, raising DataError for missing/empty/corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    if path.stat().st_size == 0:
        raise DataError(path, "zero-byte file")
    if path.suffix.lower() == ".dcm":
        return _read_dicom(path)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("P", "PA"):
                img = img.convert("RGBA" if "transparency" in img.info or img.mode == "PA" else "RGB")
            if img.mode == "I;16B":
                img = img.convert("I;16")
            array = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"cannot decode image ({exc.__class__.__name__}: {exc})") from exc
    return array


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as float32 grey (H, W) in [0, 1]."""
    return to_grey_unit(read_array(path), path)


def read_mask(path: str | Path, threshold: int = 0, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask file as bool (H, W): pixel value > ``threshold`` is nodule. Checks ``shape`` if given."""
    array = read_array(path)
    if array.ndim == 3:
        array = array[..., :3].max(axis=-1)
    if array.ndim != 2:
        raise DataError(path, f"expected a 2D mask, got array of shape {array.shape}")
    mask = array > threshold
    if shape is not None and mask.shape != tuple(shape):
        raise DataError(path, f"mask size {mask.shape[1]}x{mask.shape[0]} differs from image size {shape[1]}x{shape[0]}")
    return mask


def _read_dicom(path: Path) -> np.ndarray:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise DataError(path, f"cannot read DICOM ({exc.__class__.__name__}: {exc})") from exc
    if "PixelData" not in ds:
        raise DataError(path, "DICOM file has no pixel data")
    try:
        array = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for unsupported transfer syntaxes
        raise DataError(path, f"cannot decode DICOM pixels ({exc.__class__.__name__}: {exc})") from exc
    if array.ndim == 3 and array.shape[-1] not in (3, 4):
        array = array[0]  # multi-frame: first frame; cine handling belongs to video sources
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        array = array.max() - array  # MONOCHROME1 stores inverted grey
    return array
