"""Decode image files (PNG, JPEG, TIFF, DICOM) to float32 grey in [0, 1], with errors that name the file.

Intensity rule (one rule, no guessing from pixel content):

* Integer pixels are divided by the largest value their bit depth can hold: 255 for 8-bit, 65535 for 16-bit
  PNG/TIFF, and ``2**BitsStored - 1`` for DICOM, whose header declares how many of the 16 container bits
  are used (12-bit ultrasound/CT data stored in 16-bit words therefore maps 4095 to 1.0). Signed data is
  shifted by the smallest representable value first. Dividing by the declared depth, rather than by the
  image's own maximum, keeps the grey scale comparable between images of one acquisition.
  (An earlier heuristic -- "a 16-bit image whose maximum lies in 256..4095 is 12-bit" -- was dropped: it
  made the scale depend on pixel content, so two frames of one PNG series could be scaled differently.)
* Float pixels already inside [0, 1] are kept as they are; any other float range is min-max normalised
  (there is no declared range to divide by). NaN or infinite values are an error.
* Colour is averaged to grey (B-mode ultrasound is grey; colour Doppler overlays are out of scope);
  alpha channels are dropped; palette images are expanded through their palette first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from rlar.errors import DataError

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm")
_DICOM_SUFFIXES: tuple[str, ...] = (".dcm", ".dicom")
_DICOM_MAGIC_OFFSET = 128  # DICOM Part 10 files: 128-byte preamble, then b"DICM"

# Pillow modes converted before handing pixels to numpy, so that every array is grey, RGB(A), or 16-bit.
_TO_RGB_MODES = frozenset({"CMYK", "YCbCr", "LAB", "HSV", "RGBX"})


def to_grey_unit(array: np.ndarray, item: str | Path, bits: int | None = None) -> np.ndarray:
    """Convert a pixel array (H,W), (H,W,2) grey+alpha, (H,W,3) or (H,W,4) to float32 grey (H, W) in [0, 1].

    ``bits``: the number of significant bits of integer data when the file declares it (DICOM BitsStored);
    otherwise the dtype's full range is used. See the module docstring for the rule.
    """
    if array.ndim == 3 and array.shape[-1] in (2, 3, 4):
        # (H,W,2) is grey+alpha, (H,W,4) RGB+alpha: drop alpha, average colour channels.
        channels = 1 if array.shape[-1] == 2 else 3
        dtype = array.dtype
        array = array[..., :channels].astype(np.float64).mean(axis=-1)
        if np.issubdtype(dtype, np.integer):
            # Keep integer semantics (range from the dtype) while avoiding a lossy cast back to integers.
            return _scale_integer(array, dtype, bits, item)
    if array.ndim != 2:
        raise DataError(item, f"expected a 2D grey or RGB(A) image, got array of shape {array.shape}")
    if array.dtype == bool:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        return _scale_integer(array.astype(np.float64), array.dtype, bits, item)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise DataError(item, "image contains NaN or infinite values")
        lo, hi = float(array.min()), float(array.max())
        if lo >= 0.0 and hi <= 1.0:
            return array.astype(np.float32)
        out = (array - lo) / (hi - lo) if hi > lo else np.zeros(array.shape, dtype=np.float64)
        return np.clip(out, 0.0, 1.0).astype(np.float32)
    raise DataError(item, f"unsupported pixel type {array.dtype}")


def _scale_integer(values: np.ndarray, dtype: np.dtype, bits: int | None, item: str | Path) -> np.ndarray:
    """Map integer pixel values (given as float64) to [0, 1] by the declared bit depth or the dtype's range."""
    info = np.iinfo(dtype)
    signed = info.min < 0
    if bits is None:
        bits = info.bits
    if not 1 <= bits <= info.bits:
        raise DataError(item, f"declared bit depth {bits} does not fit the {dtype} pixel container")
    lo = -(2 ** (bits - 1)) if signed else 0
    span = float(2**bits - 1)
    out = (values - lo) / span
    if out.size and (out.min() < -1e-9 or out.max() > 1 + 1e-9):
        raise DataError(item, f"pixel values {values.min():g}..{values.max():g} exceed the declared {bits}-bit range")
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def read_array(path: str | Path) -> np.ndarray:
    """Read the raw pixel array of an image file, raising DataError for missing/empty/corrupt files."""
    return _read_with_depth(Path(path))[0]


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as float32 grey (H, W) in [0, 1] (see the module docstring for the scaling rule)."""
    array, bits = _read_with_depth(Path(path))
    return to_grey_unit(array, path, bits=bits)


def read_mask(path: str | Path, threshold: int = 0, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask file as bool (H, W): pixel value > ``threshold`` is nodule.

    Colour masks count a pixel as nodule when any colour channel exceeds the threshold (alpha is ignored).
    ``shape`` (H, W), if given, is the image's size; a mask of another size is a DataError naming both.
    """
    array = read_array(path)
    if array.ndim == 3 and array.shape[-1] in (2, 3, 4):
        channels = 1 if array.shape[-1] == 2 else 3
        array = array[..., :channels].max(axis=-1)
    if array.ndim != 2:
        raise DataError(path, f"expected a 2D mask, got array of shape {array.shape}")
    mask = array > threshold
    if shape is not None and mask.shape != tuple(shape):
        raise DataError(
            path,
            f"mask size {mask.shape[1]}x{mask.shape[0]} (WxH) differs from image size {shape[1]}x{shape[0]} (WxH)",
        )
    return mask


def _read_with_depth(path: Path) -> tuple[np.ndarray, int | None]:
    """Pixel array plus the declared bit depth (DICOM only; None means 'use the dtype's range')."""
    if not path.is_file():
        raise DataError(path, "file not found")
    if path.stat().st_size == 0:
        raise DataError(path, "zero-byte file")
    if path.suffix.lower() in _DICOM_SUFFIXES or _has_dicom_magic(path):
        return _read_dicom(path)
    return _read_pillow(path), None


def _has_dicom_magic(path: Path) -> bool:
    # DICOM files often come without a suffix; the Part 10 magic identifies them regardless of name.
    try:
        with path.open("rb") as handle:
            head = handle.read(_DICOM_MAGIC_OFFSET + 4)
    except OSError as exc:
        raise DataError(path, f"cannot read file ({exc.__class__.__name__}: {exc})") from exc
    return head[_DICOM_MAGIC_OFFSET:] == b"DICM"


def _read_pillow(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img.load()  # decode now so that truncated/corrupt data fails here, with the file's name
            mode = img.mode
            if mode in ("P", "PA"):
                img = img.convert("RGBA" if mode == "PA" or "transparency" in img.info else "RGB")
            elif mode in _TO_RGB_MODES:
                img = img.convert("RGB")
            elif mode.startswith("I;16") and mode != "I;16":
                img = img.convert("I;16")  # big-endian / other 16-bit layouts -> native uint16
            array = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(path, f"cannot decode image ({exc.__class__.__name__}: {exc})") from exc
    if mode == "I":
        # Pillow's 32-bit integer mode: accept it only when the values fit 16 bits (old 16-bit decoders);
        # there is no declared depth to scale genuine 32-bit data by.
        if array.size and (array.min() < 0 or array.max() > np.iinfo(np.uint16).max):
            raise DataError(path, "32-bit integer pixels outside the 16-bit range are not supported")
        array = array.astype(np.uint16)
    return array


def _read_dicom(path: Path) -> tuple[np.ndarray, int | None]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError) as exc:
        raise DataError(path, f"cannot read DICOM ({exc.__class__.__name__}: {exc})") from exc
    if "PixelData" not in ds:
        raise DataError(path, "DICOM file has no pixel data (PixelData element missing)")
    try:
        array = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for unsupported transfer syntaxes / bad headers
        raise DataError(path, f"cannot decode DICOM pixels ({exc.__class__.__name__}: {exc})") from exc
    samples = int(getattr(ds, "SamplesPerPixel", 1))
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        array = array[0]  # multi-frame: first frame; cine handling belongs to video sources
    if array.ndim == 3 and samples == 1:
        raise DataError(path, f"unexpected DICOM pixel array shape {array.shape}")
    bits_stored = getattr(ds, "BitsStored", None)
    bits = int(bits_stored) if bits_stored is not None and np.issubdtype(array.dtype, np.integer) else None
    if bits is not None and bits > np.iinfo(array.dtype).bits:
        raise DataError(path, f"BitsStored {bits} exceeds the {array.dtype} pixel container")
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1" and np.issubdtype(array.dtype, np.integer):
        # MONOCHROME1 stores inverted grey: invert within the declared range, not the image's own maximum
        # (which would shift the grey scale image by image).
        info = np.iinfo(array.dtype)
        depth = bits if bits is not None else info.bits
        if info.min < 0:
            lo, hi = -(2 ** (depth - 1)), 2 ** (depth - 1) - 1
        else:
            lo, hi = 0, 2**depth - 1
        array = (hi + lo - array.astype(np.int64)).astype(array.dtype)
    return array, bits
