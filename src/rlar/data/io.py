"""Decode image files (PNG, JPEG, TIFF, DICOM) to float32 grey in [0, 1], with errors that name the file.

Intensity rule (one rule, no guessing from pixel content):

* Integer pixels are divided by the largest value their bit depth can hold: 255 for 8-bit, 65535 for 16-bit
  PNG/TIFF, and ``2**BitsStored - 1`` for DICOM, whose header declares how many of the 16 container bits
  are used (12-bit ultrasound/CT data stored in 16-bit words therefore maps 4095 to 1.0). Signed data is
  shifted by the smallest representable value first. Dividing by the declared depth, rather than by the
  image's own maximum, keeps the grey scale comparable between images of one acquisition.
  (An earlier heuristic -- "a 16-bit image whose maximum lies in 256..4095 is 12-bit" -- was dropped: it
  made the scale depend on pixel content, so two frames of one PNG series could be scaled differently.
  Such an image now keeps the rule but raises a :class:`rlar.errors.DataWarning`, see below.)
* Float pixels already inside [0, 1] are kept as they are; any other float range is min-max normalised
  (there is no declared range to divide by). NaN or infinite values are an error.
* Colour is averaged to grey (B-mode ultrasound is grey; colour Doppler overlays are out of scope);
  alpha channels are dropped; palette images are expanded through their palette first.

Bit-depth surprises are never silent: a 16-bit PNG/TIFF whose values all fit in 12 bits or fewer (it comes out
nearly black under the rule above) raises a :class:`~rlar.errors.DataWarning`; a DICOM whose data exceed its
declared ``BitsStored`` keeps its high bits (pydicom would mask them off) and is scaled by the bits the data
really use, with a warning.

Memory: the pixel count is read from the headers and checked against ``max_pixels`` (default
:data:`MAX_PIXELS`) *before* any pixel is decoded (a 200 KB compressed DICOM can declare 14000 x 14000 pixels),
and decoding goes straight from the file's integer type to float32 without float64 copies (about 4 bytes per
pixel plus the decoded integers). :func:`read_image` decodes only the first frame of a multi-frame DICOM or TIFF
(training sources are stills), so the cap counts Rows x Columns x SamplesPerPixel of that frame;
:func:`read_frames` (prediction) decodes every frame, from a path or from in-memory bytes, and the cap counts
all of them. Every frame is counted by its *own* header, never as "the first frame times the frame count":

* TIFF pages and MPO (multi-picture JPEG) frames each declare their own size; each page's header (and a TIFF
  page's tile size) is read before anything is decoded, so a 16x16 page followed by a 12000x12000 page is
  refused. APNG frames are bounded by the canvas (Pillow refuses larger ones), so canvas x frames is exact.
* Compressed DICOM: the embedded codestream of every frame that will be decoded is parsed first (JPEG /
  JPEG-LS SOF, JPEG 2000 SIZ, the RLE packet headers); a codestream that declares (or, for RLE, expands to)
  more than Rows x Columns x SamplesPerPixel is refused before the codec sees it. The deflated transfer syntax,
  whose whole dataset would have to be inflated before its header could be read, is refused.
* Pillow is only asked to open PNG, JPEG/MPO and TIFF (the formats this package accepts), so no other plugin's
  frame or size rules apply.

This module is the one decoder of the package: :mod:`rlar.inference.images` only adds the upload policy
(formats accepted by content) and array inputs on top of :func:`read_frames`.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from rlar.data.files import display_name, is_utf8_name
from rlar.errors import DataError, DataWarning

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm")
_DICOM_SUFFIXES: tuple[str, ...] = (".dcm", ".dicom")
_DICOM_MAGIC_OFFSET = 128  # DICOM Part 10 files: 128-byte preamble, then b"DICM"
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)

#: Most decoded pixel values (width x height x samples of the one decoded frame) an image may declare. About
#: 160 MB of float32 output; ultrasound frames are well under 2 megapixels. Pass ``max_pixels`` to change it.
MAX_PIXELS: int = 40_000_000

#: A 16-bit PNG/TIFF whose largest value needs at most this many bits is reported as probably low-bit data.
LOW_BIT_WARNING_BITS: int = 12

# DICOM ultrasound region calibration (PS3.3 C.8.5.5.1.15): PhysicalUnitsX/YDirection code 3 is centimetres.
_US_UNITS_CM = 3

# Pillow modes converted before handing pixels to numpy, so that every array is grey, RGB(A), or 16-bit.
_TO_RGB_MODES = frozenset({"CMYK", "YCbCr", "LAB", "HSV", "RGBX"})


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says, read without decoding pixels.

    ``spacing_mm`` is (row, column) pixel spacing in millimetres (DICOM only; None when not declared).
    ``bits_stored`` is DICOM BitsStored (None for other formats).
    """

    path: Path
    format: str  # "dicom" or the Pillow format name ("PNG", "JPEG", "TIFF", ...)
    width: int
    height: int
    samples: int = 1
    frames: int = 1
    bits_stored: int | None = None
    spacing_mm: tuple[float, float] | None = None
    #: (width, height, samples) of every frame, from each frame's own header, for formats whose frames may differ
    #: in size (TIFF pages, MPO pictures); empty when every frame has the first frame's size (DICOM, PNG, JPEG).
    frame_sizes: tuple[tuple[int, int, int], ...] = ()

    @property
    def decoded_values(self) -> int:
        """Values decoded for the first frame, every sample (what :data:`MAX_PIXELS` caps for a still)."""
        return self.width * self.height * self.samples

    def values(self, frames: int | None = None) -> int:
        """Values decoded for the first ``frames`` frames (default: all), each frame counted by its own header."""
        count = self.frames if frames is None else min(frames, self.frames)
        if self.frame_sizes:
            return sum(w * h * c for w, h, c in self.frame_sizes[:count])
        return self.decoded_values * count

    @property
    def total_values(self) -> int:
        """Values decoded for every frame (what :func:`read_frames` with ``all_frames=True`` checks)."""
        return self.values()


def to_grey_unit(array: np.ndarray, item: str | Path, bits: int | None = None) -> np.ndarray:
    """Convert a pixel array (H,W), (H,W,2) grey+alpha, (H,W,3) or (H,W,4) to float32 grey (H, W) in [0, 1].

    ``bits``: the number of significant bits of integer data when the file declares it (DICOM BitsStored);
    otherwise the dtype's full range is used. See the module docstring for the rule. Integer input goes to
    float32 directly (float64 only for containers wider than 16 bits, which float32 cannot hold exactly).
    """
    channels = 1
    if array.ndim == 3 and array.shape[-1] in (2, 3, 4):
        # (H,W,2) is grey+alpha, (H,W,4) RGB+alpha: drop alpha, average colour channels.
        channels = 1 if array.shape[-1] == 2 else 3
        if channels == 1:
            array = array[..., 0]
    elif array.ndim != 2:
        raise DataError(item, f"expected a 2D grey or RGB(A) image, got array of shape {array.shape}")
    if array.dtype == bool:
        return _channel_sum(array, channels, np.dtype(np.float32)) / np.float32(channels)
    if np.issubdtype(array.dtype, np.integer):
        return _scale_integer(array, channels, bits, item)
    if np.issubdtype(array.dtype, np.floating):
        grey = _channel_sum(array, channels, np.dtype(np.float32))
        if channels > 1:
            grey /= np.float32(channels)
        if not np.isfinite(grey).all():
            raise DataError(item, "image contains NaN or infinite values")
        lo, hi = float(grey.min()), float(grey.max())
        if lo >= 0.0 and hi <= 1.0:
            return grey
        if hi <= lo:
            return np.zeros(grey.shape, dtype=np.float32)
        grey -= np.float32(lo)
        grey /= np.float32(hi - lo)
        return np.clip(grey, 0.0, 1.0, out=grey)
    raise DataError(item, f"unsupported pixel type {array.dtype}")


def _channel_sum(array: np.ndarray, channels: int, dtype: np.dtype) -> np.ndarray:
    """Sum of the first ``channels`` channels (or the 2D array itself) as a new array of ``dtype``."""
    if channels == 1:
        return array.astype(dtype)
    out = array[..., 0].astype(dtype)
    for c in range(1, channels):
        out += array[..., c]
    return out


def _scale_integer(array: np.ndarray, channels: int, bits: int | None, item: str | Path) -> np.ndarray:
    """Map integer pixels (``channels`` colour channels to average) to [0, 1] by the declared or dtype's depth."""
    info = np.iinfo(array.dtype)
    signed = info.min < 0
    if bits is None:
        bits = info.bits
    if not 1 <= bits <= info.bits:
        raise DataError(item, f"declared bit depth {bits} does not fit the {array.dtype} pixel container")
    lo = -(2 ** (bits - 1)) if signed else 0
    span = 2**bits - 1
    if array.size:
        vmin, vmax = int(array.min()), int(array.max())  # on the integers: no float copy for the check
        if vmin < lo or vmax > lo + span:
            raise DataError(item, f"pixel values {vmin}..{vmax} exceed the declared {bits}-bit range")
    # float32 holds every integer up to 2**24 exactly: sums of three 16-bit channels included.
    dtype = np.dtype(np.float32) if info.bits <= 16 else np.dtype(np.float64)
    out = _channel_sum(array, channels, dtype)
    if lo:
        out -= dtype.type(lo * channels)
    out /= dtype.type(span * channels)  # one rounding: (sum - channels*lo) / (channels*span)
    np.clip(out, 0.0, 1.0, out=out)
    return out.astype(np.float32, copy=False)


def sniff_format(head: bytes) -> str | None:
    """The format of a file from its first 132 bytes ("png", "jpeg", "tiff", "dicom"), or None when unknown.

    Content decides, never the name: a PNG called ``scan.dcm`` is a PNG. DICOM Part 10 is recognised by the
    b"DICM" magic after its 128-byte preamble.
    """
    if head[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + 4] == b"DICM":
        return "dicom"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


@dataclass(frozen=True)
class _Input:
    """One encoded image: a file on disk or bytes in memory (uploads are never written to disk), and its label."""

    label: Path
    path: Path | None = None
    data: bytes | None = None

    def open(self) -> BinaryIO:
        """A fresh binary stream over the encoded bytes (the caller closes it)."""
        if self.data is not None:
            return io.BytesIO(self.data)
        return (self.path or self.label).open("rb")

    def pillow_source(self) -> Path | BinaryIO:
        """What to hand Image.open: the path itself (so Pillow closes the file it opened) or an in-memory stream."""
        return self.path if self.path is not None else self.open()

    def head(self) -> bytes:
        if self.data is not None:
            return self.data[: _DICOM_MAGIC_OFFSET + 4]
        try:
            with self.open() as handle:
                return handle.read(_DICOM_MAGIC_OFFSET + 4)
        except OSError as exc:
            raise DataError(self.label, f"cannot read file ({exc.__class__.__name__}: {exc})") from exc

    @property
    def is_dicom(self) -> bool:
        """DICOM by content; unrecognised content with a DICOM suffix too (no Part 10 preamble: pydicom says why).

        Content wins over the name: a PNG called ``scan.dcm`` is decoded as the PNG it is.
        """
        kind = sniff_format(self.head())
        if kind is not None:
            return kind == "dicom"
        return self.path is not None and self.path.suffix.lower() in _DICOM_SUFFIXES


def _as_input(source: str | Path | bytes, name: str | Path | None) -> _Input:
    """Check that a path names a non-empty file (or bytes are non-empty) and label it for messages."""
    if isinstance(source, bytes | bytearray):
        label = Path(name) if name is not None else Path("upload")
        if not source:
            raise DataError(label, "empty file")
        return _Input(label=label, data=bytes(source))
    path = Path(source)
    # Messages name the file as printable text: a name that is not UTF-8 shows its odd bytes as \xNN.
    label = Path(name) if name is not None else (path if is_utf8_name(path) else Path(display_name(path)))
    if not path.is_file():
        raise DataError(label, "file not found" if not path.exists() else "not a file")
    if path.stat().st_size == 0:
        raise DataError(label, "zero-byte file")
    return _Input(label=label, path=path)


def read_header(source: str | Path | bytes, name: str | Path | None = None) -> ImageHeader:
    """Size, samples, frames, DICOM BitsStored and pixel spacing from a file's (or bytes') header, no pixels decoded."""
    src = _as_input(source, name)
    if src.is_dicom:
        return _dicom_image_header(src.label, _dicom_header(src))
    try:
        with _open_pillow(src) as img:
            return _pillow_header(src.label, img)
    except _PILLOW_ERRORS as exc:
        raise _pillow_error(src, exc) from exc


def declared_values(source: str | Path | bytes, name: str | Path | None = None) -> int:
    """Pixel values the headers of a file (or bytes) declare for all frames, each frame counted by its own header.

    The count :func:`read_frames` checks against its ``max_pixels``; no pixel is decoded.
    """
    return read_header(source, name).total_values


# Pillow is asked to open only the formats the package accepts: the rules below (which frames have their own
# size, what seeking a frame costs) are checked for these plugins, not for Pillow's other thirty. (MPO has no
# opener of its own: the JPEG opener returns an MPO image when the file holds several pictures.)
_PILLOW_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "TIFF")
# Formats whose frames each declare their own size, and whose seek(i) reads only frame i's header (APNG's
# seek decodes the previous frame, but its frames never exceed the canvas: canvas x frames is exact there).
_PER_FRAME_SIZES = frozenset({"TIFF", "MPO"})
_PILLOW_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def _open_pillow(src: _Input) -> Image.Image:
    return Image.open(src.pillow_source(), formats=_PILLOW_FORMATS)


def _pillow_error(src: _Input, exc: Exception) -> DataError:
    """The DataError for a file Pillow cannot read; a header Pillow does not recognise is called corrupt."""
    if isinstance(exc, Image.DecompressionBombError):
        # Pillow's own guard (about 179 M pixels in the first frame) fires at open, before ours can: same verdict.
        return TooManyPixels(src.label, f"the header declares more pixels than Pillow decodes ({exc}); refused "
                                        "before decoding")
    if isinstance(exc, UnidentifiedImageError):
        kind = sniff_format(src.head())
        if kind is None:
            return DataError(src.label, "cannot decode image: not a PNG, JPEG, TIFF or DICOM file (content not "
                                        "recognised)")
        return DataError(src.label, f"cannot decode image: corrupt or truncated {kind.upper()} data (the header "
                                    "cannot be read)")
    return DataError(src.label, f"cannot decode image ({exc.__class__.__name__}: {exc})")


def _frame_size(img: Image.Image) -> tuple[int, int, int]:
    """(width, height, samples) of the current frame, from its header."""
    return int(img.size[0]), int(img.size[1]), len(img.getbands())


def _pillow_header(label: Path, img: Image.Image) -> ImageHeader:
    """The header of an open Pillow image; TIFF/MPO frames each read from their own header (no pixel decoded)."""
    fmt = str(img.format or label.suffix.lstrip(".").upper())
    frames = int(getattr(img, "n_frames", 1) or 1)
    first = _frame_size(img)
    sizes: list[tuple[int, int, int]] = [first]
    if frames > 1 and fmt in _PER_FRAME_SIZES:
        # Pillow has already walked every TIFF page's IFD to count them; an MPO index holds at most 4096 entries.
        for index in range(1, frames):
            img.seek(index)
            sizes.append(_frame_size(img))
        img.seek(0)
    return ImageHeader(
        path=label,
        format=fmt,
        width=first[0],
        height=first[1],
        samples=first[2],
        frames=frames,
        frame_sizes=() if all(size == first for size in sizes) else tuple(sizes),
    )


def dicom_calibration(ds: Any) -> tuple[tuple[float, float] | None, str, list[str]]:
    """(row, column) pixel spacing in mm from a DICOM dataset, where it came from, and notes for the user.

    ``PixelSpacing`` (row, column, mm) first; otherwise the first ultrasound region of
    ``SequenceOfUltrasoundRegions`` whose X and Y units are centimetres (code 3): PhysicalDeltaY/X are cm per
    pixel, so spacing = 10 x (|delta Y|, |delta X|). Regions in other units (seconds, Hz: Doppler/M-mode) are
    not spatial and are ignored. The origin is "PixelSpacing", "SequenceOfUltrasoundRegions" or "none".
    """
    spacing = getattr(ds, "PixelSpacing", None)
    if spacing is not None and len(spacing) == 2:
        row, col = float(spacing[0]), float(spacing[1])
        if row > 0 and col > 0 and np.isfinite(row) and np.isfinite(col):
            return (row, col), "PixelSpacing", []
    regions = getattr(ds, "SequenceOfUltrasoundRegions", None) or []
    for region in regions:
        units = (getattr(region, "PhysicalUnitsXDirection", None), getattr(region, "PhysicalUnitsYDirection", None))
        dx, dy = getattr(region, "PhysicalDeltaX", None), getattr(region, "PhysicalDeltaY", None)
        if units == (_US_UNITS_CM, _US_UNITS_CM) and dx is not None and dy is not None:
            row, col = abs(float(dy)) * 10.0, abs(float(dx)) * 10.0
            if row > 0 and col > 0 and np.isfinite(row) and np.isfinite(col):
                notes = [f"{len(regions)} ultrasound regions; spacing taken from the first calibrated one"]
                return (row, col), "SequenceOfUltrasoundRegions", notes if len(regions) > 1 else []
    return None, "none", []


def dicom_spacing(ds: Any) -> tuple[float, float] | None:
    """(row, column) pixel spacing in mm from a DICOM dataset, or None (see :func:`dicom_calibration`)."""
    return dicom_calibration(ds)[0]


def declared_spacing(path: str | Path) -> tuple[float, float] | None:
    """(row, column) pixel spacing in mm a DICOM file declares, for a source's scan; None for other formats
    and for unreadable files (decoding them later reports the file with its reason)."""
    path = Path(path)
    try:
        if not path.is_file() or not _as_input(path, None).is_dicom:
            return None
        return read_header(path).spacing_mm
    except DataError:
        return None


class TooManyPixels(DataError):
    """A file refused before decoding because its headers declare more pixel values than the cap.

    A :class:`DataError` like every other decoding failure; its own type lets a caller answer it differently
    (the viewer: 413, not 400).
    """


def check_pixel_budget(header: ImageHeader, max_pixels: int = MAX_PIXELS, frames: int = 1) -> None:
    """Raise DataError when decoding the first ``frames`` frames of ``header`` would give more than ``max_pixels``
    values, each frame counted by its own header (:attr:`ImageHeader.frame_sizes`).

    Called with the header only, so a file declaring a huge image is refused before any pixel is decoded.
    """
    values = header.values(frames)
    if values <= max_pixels:
        return
    count = min(frames, header.frames)
    limit = f"more than the limit of {max_pixels:,} (rlar.data.io.MAX_PIXELS); refused before decoding"
    if not header.frame_sizes:
        raise TooManyPixels(
            header.path,
            f"{header.format} header declares {header.width}x{header.height} pixels x {header.samples} sample(s) x "
            f"{count} frame(s) = {values:,} values ({header.width * header.height * count:,} pixels), {limit}",
        )
    sizes = header.frame_sizes[:count]
    index = max(range(len(sizes)), key=lambda i: sizes[i][0] * sizes[i][1] * sizes[i][2])
    width, height, samples = sizes[index]
    raise TooManyPixels(
        header.path,
        f"{header.format} frames of different sizes, each checked by its own header: frame {index + 1} of "
        f"{header.frames} declares {width}x{height} pixels x {samples} sample(s); the {count} frame(s) to decode "
        f"hold {values:,} values, {limit}",
    )


@dataclass
class DecodedFrames:
    """Grey frames of one file and what its header says about geometry.

    frames: float32 (H, W) arrays in [0, 1], one per decoded frame (a still image has one).
    spacing_mm: (row, column) pixel spacing in millimetres, or None when the file does not declare it.
    spacing_source: "PixelSpacing", "SequenceOfUltrasoundRegions" or "none".
    format: "dicom" or Pillow's format name in lower case ("png", "jpeg", "tiff", ...).
    notes: facts worth telling a user (several calibrated regions, unequal row/column spacing).
    """

    frames: list[np.ndarray]
    format: str
    spacing_mm: tuple[float, float] | None = None
    spacing_source: str = "none"
    notes: list[str] = field(default_factory=list)


@dataclass
class _Raw:
    """Undecoded-to-grey result: integer/float pixel arrays, their declared bit depth (DICOM), the header."""

    arrays: list[np.ndarray]
    bits: int | None
    format: str
    dataset: Any = None


def read_frames(
    source: str | Path | bytes, name: str | Path | None = None, max_pixels: int = MAX_PIXELS, all_frames: bool = True
) -> DecodedFrames:
    """Decode a file path or in-memory file bytes into grey frames with the spacing its header declares.

    Args:
        source: a path, or the bytes of a file (uploads are decoded from memory, never written to disk).
        name: how to call the input in errors (default: the path, or "upload" for bytes).
        max_pixels: refuse files whose header declares more decoded values than this (all decoded frames
            together), before any pixel is decoded.
        all_frames: every frame of a multi-frame DICOM or TIFF clip (prediction), or only the first (training).

    Raises:
        DataError naming the input: missing/empty file, corrupt or truncated data, too many pixels, DICOM without
        pixel data.
    """
    src = _as_input(source, name)
    raw = _decode(src, max_pixels, all_frames)
    notes: list[str] = []
    if raw.bits is None and raw.arrays:
        # The same bit-depth check as training's read_image, over every frame; a note too, so that a report
        # (predict's JSON/HTML, the viewer's page) carries it and not only the terminal.
        brightest = max(raw.arrays, key=lambda a: int(a.max()) if a.size and a.dtype.kind in "ui" else -1)
        message = _warn_low_bit_depth(brightest, src.label)
        if message is not None:
            notes.append(message)
    frames = [to_grey_unit(array, src.label, bits=raw.bits) for array in raw.arrays]
    if raw.dataset is None:
        return DecodedFrames(frames=frames, format=raw.format, notes=notes)
    spacing, origin, calibration_notes = dicom_calibration(raw.dataset)
    notes.extend(calibration_notes)
    if spacing is not None and not np.isclose(spacing[0], spacing[1], rtol=1e-3):
        notes.append(f"unequal row/column spacing ({spacing[0]:.4g} vs {spacing[1]:.4g} mm): measurements use both")
    return DecodedFrames(frames=frames, format="dicom", spacing_mm=spacing, spacing_source=origin, notes=notes)


def read_array(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read the raw pixel array of an image file, raising DataError for missing/empty/corrupt/oversized files."""
    return _decode(_as_input(path, None), max_pixels, all_frames=False).arrays[0]


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as float32 grey (H, W) in [0, 1] (see the module docstring for the scaling rule)."""
    raw = _decode(_as_input(path, None), max_pixels, all_frames=False)
    if raw.bits is None:
        _warn_low_bit_depth(raw.arrays[0], path)
    return to_grey_unit(raw.arrays[0], path, bits=raw.bits)


def read_mask(
    path: str | Path, threshold: int = 0, shape: tuple[int, int] | None = None, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Read a mask file as bool (H, W): pixel value > ``threshold`` is nodule.

    Colour masks count a pixel as nodule when any colour channel exceeds the threshold (alpha is ignored).
    ``shape`` (H, W), if given, is the image's size; a mask of another size is a DataError naming both.
    """
    array = read_array(path, max_pixels)
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


def low_bit_depth_message(array: np.ndarray, path: str | Path) -> str | None:
    """Why a 16-bit (or wider) container of few-bit values comes out nearly black, or None.

    The one check of the package (training's :func:`read_image`, prediction's and the server's
    :func:`read_frames`), so that every path says the same thing about the same file.
    """
    if not np.issubdtype(array.dtype, np.unsignedinteger) or array.dtype.itemsize < 2 or not array.size:
        return None
    vmax = int(array.max())
    used = vmax.bit_length()
    container = array.dtype.itemsize * 8
    if not 0 < used <= LOW_BIT_WARNING_BITS:
        return None
    return (
        f"{path}: values 0..{vmax} use only {used} of the {container} bits of the file, so under the bit-depth "
        f"rule the image is nearly black (brightest grey {vmax / (2**container - 1):.3f}); if this is {used}-bit "
        f"data, store it scaled to the full range (multiply by {2 ** (container - used)}) or as DICOM with "
        "BitsStored"
    )


def _warn_low_bit_depth(array: np.ndarray, path: str | Path) -> str | None:
    """Warn (DataWarning) when a 16-bit (or wider) container holds few-bit values; returns the message."""
    message = low_bit_depth_message(array, path)
    if message is not None:
        warnings.warn(message, DataWarning, stacklevel=3)
    return message


def _decode(src: _Input, max_pixels: int, all_frames: bool) -> _Raw:
    """The one decoder: header, pixel cap, then the pixels of the first or of every frame."""
    if src.is_dicom:
        return _read_dicom(src, max_pixels, all_frames)
    return _read_pillow(src, max_pixels, all_frames)


def _read_pillow(src: _Input, max_pixels: int, all_frames: bool) -> _Raw:
    try:
        with _open_pillow(src) as img:
            # Image.open reads only the first header; _pillow_header reads each TIFF page's / MPO picture's own
            # header (seek without decoding), so every frame is checked before load() decodes anything.
            header = _pillow_header(src.label, img)
            count = header.frames if all_frames else 1
            check_pixel_budget(header, max_pixels, frames=count)
            arrays = []
            for index in range(count):
                if index:
                    img.seek(index)
                if header.frame_sizes and _frame_size(img) != header.frame_sizes[index]:
                    raise DataError(src.label, f"frame {index + 1} changed size between its header check and its "
                                               "decoding; refused")
                arrays.append(_pillow_array(img, src.label))
            fmt = str(img.format or "image").lower()
    except _PILLOW_ERRORS as exc:
        raise _pillow_error(src, exc) from exc
    if not arrays:
        raise DataError(src.label, "image has no frames")
    return _Raw(arrays=arrays, bits=None, format=fmt)


def _pillow_array(frame: Image.Image, label: Path) -> np.ndarray:
    """One decoded Pillow frame as a grey, RGB(A) or 16-bit array (the layouts :func:`to_grey_unit` takes)."""
    frame.load()  # decode now so that truncated/corrupt data fails here, with the file's name
    mode = frame.mode
    converted: Image.Image = frame
    if mode in ("P", "PA"):
        converted = frame.convert("RGBA" if mode == "PA" or "transparency" in frame.info else "RGB")
    elif mode in _TO_RGB_MODES:
        converted = frame.convert("RGB")
    elif mode.startswith("I;16") and mode != "I;16":
        converted = frame.convert("I;16")  # big-endian / other 16-bit layouts -> native uint16
    array = np.asarray(converted)
    if mode == "I":
        # Pillow's 32-bit integer mode: accept it only when the values fit 16 bits (old 16-bit decoders);
        # there is no declared depth to scale genuine 32-bit data by.
        if array.size and (array.min() < 0 or array.max() > np.iinfo(np.uint16).max):
            raise DataError(label, "32-bit integer pixels outside the 16-bit range are not supported")
        array = array.astype(np.uint16)
    return array


def _dicom_header(src: _Input) -> Any:
    """The DICOM dataset without its pixel data (cheap even for a huge image)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with src.open() as handle:
            _refuse_deflated(handle, src.label)
            handle.seek(0)
            return pydicom.dcmread(handle, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as exc:
        raise DataError(src.label, f"cannot read DICOM ({exc.__class__.__name__}: {exc})") from exc


def _refuse_deflated(handle: BinaryIO, label: Path) -> None:
    """Refuse the deflated transfer syntax from the file meta alone: pydicom inflates the whole dataset (pixels
    included) before it parses the first element, so a few MB could inflate to gigabytes before any check."""
    from pydicom.filereader import _read_file_meta_info, read_preamble

    try:
        read_preamble(handle, force=True)
        meta = _read_file_meta_info(handle)
    except Exception:  # noqa: BLE001 - an unreadable meta group: dcmread reports it with its own reason
        return
    syntax = meta.get("TransferSyntaxUID")
    if syntax is not None and getattr(syntax, "is_deflated", False):
        raise DataError(label, "DICOM with the deflated transfer syntax is not supported: the whole dataset would "
                               "have to be inflated before its size could be checked; store it uncompressed or "
                               "with an image codec (JPEG, JPEG 2000, RLE)")


def _dicom_image_header(path: Path, ds: Any) -> ImageHeader:
    if "Rows" not in ds or "Columns" not in ds:
        raise DataError(path, "DICOM file has no pixel data (no Rows/Columns, so no image)")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        bits_stored = getattr(ds, "BitsStored", None)
    except (TypeError, ValueError) as exc:
        raise DataError(path, f"DICOM image size unreadable ({exc})") from exc
    return ImageHeader(
        path=path,
        format="DICOM",
        width=cols,
        height=rows,
        samples=samples,
        frames=frames,
        bits_stored=int(bits_stored) if bits_stored is not None else None,
        spacing_mm=dicom_spacing(ds),
    )


def _read_dicom(src: _Input, max_pixels: int, all_frames: bool) -> _Raw:
    from pydicom.pixels import pixel_array

    ds = _dicom_header(src)
    header = _dicom_image_header(src.label, ds)
    count = header.frames if all_frames else 1
    check_pixel_budget(header, max_pixels, frames=count)
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        # index=0 decodes only the first frame; correct_unused_bits=False keeps bits above BitsStored so that
        # data understating its depth is seen (and kept) rather than masked off.
        index = None if all_frames else 0
        if syntax is not None and syntax.is_encapsulated:
            # Compressed: read the codestreams (the file's bytes, no pixel decoded) and check what each frame
            # to decode declares against Rows x Columns before any codec allocates its output.
            full = _dicom_dataset(src)
            _check_codestreams(full, header, count, src.label)
            array = pixel_array(full, index=index, correct_unused_bits=False)
        else:
            with src.open() as handle:
                array = pixel_array(handle, index=index, correct_unused_bits=False)
    except DataError:
        raise
    except Exception as exc:  # pydicom raises many types for unsupported transfer syntaxes / bad headers
        if "pixel data" in str(exc).lower() and "no " in str(exc).lower():
            raise DataError(src.label, f"DICOM file has no pixel data ({exc})") from exc
        raise DataError(src.label, f"cannot decode DICOM pixels ({exc.__class__.__name__}: {exc})") from exc
    stack = array if all_frames and header.frames > 1 else array[None]
    if stack.ndim != (4 if header.samples > 1 else 3):
        raise DataError(src.label, f"unexpected DICOM pixel array shape {array.shape}")
    integer = np.issubdtype(stack.dtype, np.integer)
    bits = header.bits_stored if integer else None
    if bits is not None:
        if bits > np.iinfo(stack.dtype).bits:
            raise DataError(src.label, f"BitsStored {bits} exceeds the {stack.dtype} pixel container")
        bits = _real_bits(stack, bits, src.label)
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1" and integer:
        # MONOCHROME1 stores inverted grey: invert within the declared range, not the image's own maximum
        # (which would shift the grey scale image by image).
        info = np.iinfo(stack.dtype)
        depth = bits if bits is not None else info.bits
        lo, hi = (-(2 ** (depth - 1)), 2 ** (depth - 1) - 1) if info.min < 0 else (0, 2**depth - 1)
        inverted = np.subtract(hi + lo, stack, dtype=np.int32 if info.bits <= 16 else np.int64)
        stack = inverted.astype(stack.dtype)
    return _Raw(arrays=list(stack), bits=bits, format="dicom", dataset=ds)


def _dicom_dataset(src: _Input) -> Any:
    """The whole DICOM dataset, pixel data included (for a compressed file: its codestreams, still encoded)."""
    import pydicom

    try:
        with src.open() as handle:
            return pydicom.dcmread(handle)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for damaged files
        raise DataError(src.label, f"cannot read DICOM ({exc.__class__.__name__}: {exc})") from exc


# Encapsulated transfer syntaxes whose codestream headers are checked before decoding (PS3.5 A.4, A.6, A.4.x).
_JPEG_SYNTAXES = frozenset({
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",  # JPEG baseline / extended / lossless, JPEG-LS
})
_J2K_SYNTAXES = frozenset({
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",  # JPEG 2000 and HTJ2K
})
_RLE_SYNTAX = "1.2.840.10008.1.2.5"
_J2K_SIZ = b"\xff\x4f\xff\x51"  # SOC then SIZ: the codestream's start (ISO/IEC 15444-1 A.5.1)
_J2K_SEARCH = 1 << 16  # a JP2 wrapper's boxes come before the codestream; they are short


def _check_codestreams(ds: Any, header: ImageHeader, count: int, label: Path) -> None:
    """Refuse a compressed DICOM whose frames' codestreams declare more than Rows x Columns, before decoding.

    Codecs size their output from the codestream's own header (JPEG SOF, JPEG 2000 SIZ) or from the data (RLE
    runs), not from Rows x Columns; pydicom compares the two only after decoding. The first ``count`` frames
    (those that will be decoded) are parsed here; a syntax whose headers this function cannot read is refused.
    """
    from pydicom.encaps import generate_frames

    syntax = str(ds.file_meta.TransferSyntaxUID)
    if syntax not in _JPEG_SYNTAXES | _J2K_SYNTAXES | {_RLE_SYNTAX}:
        raise DataError(label, f"DICOM transfer syntax {syntax} ({ds.file_meta.TransferSyntaxUID.name}) is not "
                               "supported: its frames' sizes cannot be checked before decoding")
    if "PixelData" not in ds:
        return  # pydicom's decoder reports "no pixel data"
    offsets = getattr(ds, "ExtendedOffsetTable", None)
    lengths = getattr(ds, "ExtendedOffsetTableLengths", None)
    extended = (offsets, lengths) if offsets is not None and lengths is not None else None
    bytes_per_sample = max(1, int(getattr(ds, "BitsAllocated", 8) or 8) // 8)
    frames = generate_frames(ds.PixelData, number_of_frames=header.frames, extended_offsets=extended)
    for index, frame in zip(range(count), frames):
        if syntax == _RLE_SYNTAX:
            problem = _rle_problem(frame, header.width * header.height, header.samples * bytes_per_sample)
        else:
            problem = _codestream_size_problem(frame, syntax in _J2K_SYNTAXES, header)
        if problem is not None:
            raise DataError(label, f"frame {index + 1} of {header.frames}: {problem}; refused before decoding")


def _codestream_size_problem(frame: bytes, j2k: bool, header: ImageHeader) -> str | None:
    """Why a JPEG / JPEG-LS / JPEG 2000 codestream does not fit Rows x Columns x SamplesPerPixel, or None."""
    if j2k:
        start = frame.find(_J2K_SIZ, 0, _J2K_SEARCH)
        if start < 0 or len(frame) < start + 42:
            return "embedded JPEG 2000 codestream has no readable SIZ header"
        # SIZ: marker(2) Lsiz(2) Rsiz(2) Xsiz(4) Ysiz(4) XOsiz(4) YOsiz(4) XTsiz YTsiz XTOsiz YTOsiz(4 each) Csiz(2)
        siz = start + 2
        xsiz, ysiz, xo, yo = (int.from_bytes(frame[siz + 6 + 4 * k : siz + 10 + 4 * k], "big") for k in range(4))
        width, height = xsiz - xo, ysiz - yo
        components = int.from_bytes(frame[siz + 38 : siz + 40], "big")
        kind = "JPEG 2000"
    else:
        from pydicom.pixels.utils import _get_jpg_parameters

        info = _get_jpg_parameters(frame)
        if not info or not info.get("height") or not info.get("width"):
            return "embedded JPEG codestream has no readable frame header (SOF) with its size"
        width, height, components = int(info["width"]), int(info["height"]), int(info.get("components", 1))
        kind = "JPEG"
    if (width, height) != (header.width, header.height) or components > header.samples:
        return (f"embedded {kind} codestream declares {width}x{height} pixels x {components} component(s), but the "
                f"DICOM header says Columns x Rows {header.width}x{header.height} x {header.samples} sample(s)")
    return None


def _rle_problem(frame: bytes, plane_bytes: int, segments: int) -> str | None:
    """Why an RLE frame (PS3.5 G) would decode to more than its Rows x Columns planes, or None.

    Each segment is one byte plane of ``plane_bytes``; its packets are walked (headers only) and the walk stops
    as soon as the output passes the plane (plus the one pad byte the standard allows), so the cost is bounded
    by the plane, whatever the segment claims.
    """
    if len(frame) < 64:
        return "RLE frame shorter than its 64-byte header"
    header = np.frombuffer(frame[:64], dtype="<u4")
    count = int(header[0])
    if count != segments or not 1 <= count <= 15:
        return f"RLE header declares {count} segment(s), the DICOM header needs {segments}"
    offsets = [int(o) for o in header[1 : count + 1]] + [len(frame)]
    limit = plane_bytes + 1
    for k in range(count):
        segment = frame[offsets[k] : offsets[k + 1]]
        produced = pos = 0
        while pos < len(segment) and produced <= limit:
            n = segment[pos]
            if n > 128:  # replicate the next byte 257 - n times
                produced += 257 - n
                pos += 2
            elif n < 128:  # copy the next n + 1 bytes
                produced += n + 1
                pos += n + 2
            else:  # 128: no operation
                pos += 1
        if produced > limit:
            return (f"RLE segment {k + 1} expands to more than the {plane_bytes:,} bytes of one Rows x Columns "
                    "plane")
    return None


def _real_bits(array: np.ndarray, bits_stored: int, path: Path) -> int:
    """BitsStored, or the bits the data really use when they exceed it (with a warning: no silent masking)."""
    if not array.size:
        return bits_stored
    vmin, vmax = int(array.min()), int(array.max())
    signed = np.iinfo(array.dtype).min < 0
    if signed:
        needed = max(vmax.bit_length(), (-vmin - 1).bit_length() if vmin < 0 else 0) + 1
    else:
        needed = vmax.bit_length()
    if needed <= bits_stored:
        return bits_stored
    warnings.warn(
        f"{path}: BitsStored is {bits_stored} but pixel values reach {vmax if vmax >= 0 else vmin}, which needs "
        f"{needed} bits; the high bits are kept and the image is scaled by {needed} bits (fix the header if "
        "the extra bits are not image data)",
        DataWarning,
        stacklevel=4,
    )
    return needed
