"""Decoding inputs for prediction: formats by content, frames, DICOM spacing, and the pixel cap before decoding."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rlar.errors import DataError
from rlar.inference.images import declared_pixels, read_input, sniff_format
from tests.inference._dicom import write_dicom


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_formats_are_recognised_by_content_not_name(tmp_path: Path) -> None:
    grey = (np.arange(48 * 32) % 256).astype(np.uint8).reshape(48, 32)
    disguised = tmp_path / "scan.dcm"  # a PNG with a DICOM name
    disguised.write_bytes(_png(grey))
    image = read_input(disguised)
    assert image.kind == "png" and image.shape == (48, 32)
    np.testing.assert_allclose(image.frames[0], grey / 255.0, atol=1e-6)
    jpeg = io.BytesIO()
    Image.fromarray(grey).convert("RGB").save(jpeg, format="JPEG")
    assert sniff_format(jpeg.getvalue()[:132]) == "jpeg"
    assert read_input(jpeg.getvalue()).kind == "jpeg"
    with pytest.raises(DataError, match="not a PNG, JPEG, TIFF or DICOM"):
        read_input(b"%PDF-1.4 not an image", name="report.png")


def test_truncated_and_empty_files_are_named(tmp_path: Path) -> None:
    data = _png(np.full((64, 64), 100, dtype=np.uint8))
    with pytest.raises(DataError, match="upload.png"):
        read_input(data[: len(data) // 2], name="upload.png")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="zero-byte"):
        read_input(empty)


def test_multipage_tiff_gives_every_frame() -> None:
    frames = [Image.fromarray(np.full((20, 30), v, dtype=np.uint8)) for v in (10, 128, 250)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:])
    image = read_input(buffer.getvalue())
    assert image.kind == "tiff" and len(image.frames) == 3
    assert [round(float(f.mean()) * 255) for f in image.frames] == [10, 128, 250]


def test_pixel_cap_is_checked_from_the_header_before_decoding() -> None:
    big = _png(np.zeros((1000, 2000), dtype=np.uint8))
    assert declared_pixels(big) == 2_000_000
    with pytest.raises(DataError, match="refused before decoding"):
        read_input(big, max_pixels=1_000_000)
    rgb = _png(np.zeros((100, 200, 3), dtype=np.uint8))
    assert declared_pixels(rgb) == 60_000  # counted as the decoder's cap counts: every sample of every frame
    with pytest.raises(DataError, match="refused before decoding"):
        read_input(rgb, max_pixels=59_999)
    assert read_input(rgb, max_pixels=60_000).shape == (100, 200)


def test_dicom_pixel_spacing_and_ultrasound_regions(tmp_path: Path) -> None:
    pixels = (np.arange(40 * 50) % 4096).astype(np.uint16).reshape(40, 50)
    plain = read_input(write_dicom(tmp_path / "a.dcm", pixels, spacing=(0.1, 0.2), bits_stored=12))
    assert plain.kind == "dicom" and plain.spacing_mm == (0.1, 0.2) and plain.spacing_source == "PixelSpacing"
    assert float(plain.frames[0].max()) == pytest.approx(1999 / 4095)  # divided by the declared 12-bit depth
    assert any("unequal" in note for note in plain.notes)
    region = read_input(write_dicom(tmp_path / "b.dcm", pixels, region_cm=(0.008, 0.006)))
    assert region.spacing_source == "SequenceOfUltrasoundRegions"
    assert region.spacing_mm == pytest.approx((0.06, 0.08))  # (row = DeltaY, column = DeltaX), cm -> mm
    none = read_input(write_dicom(tmp_path / "c.dcm", pixels))
    assert none.spacing_mm is None and none.spacing_source == "none"


def test_multiframe_dicom_gives_every_frame(tmp_path: Path) -> None:
    clip = np.stack([np.full((16, 24), v, dtype=np.uint8) for v in (0, 100, 200, 255)])
    image = read_input(write_dicom(tmp_path / "clip.dcm", clip))
    assert len(image.frames) == 4 and image.shape == (16, 24)
    assert [round(float(f.mean()) * 255) for f in image.frames] == [0, 100, 200, 255]


def test_dicom_without_pixel_data_and_huge_header(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no pixel data"):
        read_input(write_dicom(tmp_path / "nopix.dcm", None))
    # 14000 x 14000 declared in a file of a few hundred bytes: refused from the header, nothing decoded.
    liar = write_dicom(tmp_path / "huge.dcm", np.zeros((4, 4), dtype=np.uint8), declared=(14000, 14000, 1))
    assert liar.stat().st_size < 2000
    with pytest.raises(DataError, match="196,000,000 pixels"):
        read_input(liar)


def test_arrays_and_given_spacing() -> None:
    image = read_input(np.full((10, 12), 0.25, dtype=np.float32), spacing_mm=(0.5, 0.5))
    assert image.kind == "array" and image.spacing_source == "given" and image.spacing_mm == (0.5, 0.5)
    with pytest.raises(DataError, match="positive"):
        read_input(np.zeros((4, 4), dtype=np.float32), spacing_mm=(0.0, 1.0))
