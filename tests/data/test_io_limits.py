"""Decoding limits and surprises (issue 11, items 2, 4, 6): a pixel cap from the header, bit depth, DICOM spacing."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from rlar.data.io import MAX_PIXELS, read_header, read_image
from rlar.errors import DataError, DataWarning
from tests._benchmarks import load_benchmark


def _benchmark():
    return load_benchmark("decode_memory")


def _dicom(path: Path, pixels: np.ndarray, bits_stored: int = 16, **elements: Any) -> Path:

    from tests._dicom_base import ultrasound_dataset

    ds = ultrasound_dataset()
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    for key, value in elements.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_huge_compressed_dicom_is_refused_from_its_header(tmp_path: Path) -> None:
    path = _benchmark().write_rle_dicom(tmp_path / "huge.dcm", 14000, 14000)
    assert path.stat().st_size < 5_000_000  # small on disk, 196 megapixels declared
    header = read_header(path)
    assert (header.width, header.height, header.decoded_values) == (14000, 14000, 196_000_000)
    with pytest.raises(DataError, match="refused before decoding") as info:
        read_image(path)
    assert info.value.item == str(path) and "14000x14000" in info.value.reason


def test_rle_writer_of_the_benchmark_decodes_to_its_declared_size(tmp_path: Path) -> None:
    path = _benchmark().write_rle_dicom(tmp_path / "small.dcm", 30, 40)
    image = read_image(path)
    assert image.shape == (30, 40) and image.dtype == np.float32 and not image.any()


def test_pixel_cap_applies_to_png_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((300, 400), np.uint8)).save(path)
    with pytest.raises(DataError, match="120,000 values"):
        read_image(path, max_pixels=100_000)
    assert read_image(path).shape == (300, 400)  # the default cap is far above
    assert MAX_PIXELS >= 4000 * 4000


def test_decode_is_float32_and_matches_the_rule(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(path)
    out = read_image(path)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, rgb.astype(np.float64).mean(axis=-1) / 255.0, rtol=0, atol=1e-7)


def test_12bit_data_in_16bit_png_warns(tmp_path: Path) -> None:
    path = tmp_path / "twelve.png"
    Image.fromarray(np.array([[0, 1000], [2500, 4095]], dtype=np.uint16)).save(path)
    with pytest.warns(DataWarning, match="use only 12 of the 16 bits"):
        out = read_image(path)
    assert out.max() == pytest.approx(4095 / 65535)  # the rule itself is unchanged: no content-dependent scale
    full = tmp_path / "full.png"
    Image.fromarray(np.array([[0, 65535]], dtype=np.uint16)).save(full)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        read_image(full)  # full-range 16-bit data: no warning


def test_dicom_data_above_bits_stored_keeps_high_bits_with_warning(tmp_path: Path) -> None:
    pixels = np.array([[0, 1000], [3000, 4095]], dtype=np.uint16)
    path = _dicom(tmp_path / "under.dcm", pixels, bits_stored=8)  # header says 8 bits; data need 12
    with pytest.warns(DataWarning, match="BitsStored is 8 .* needs 12 bits"):
        out = read_image(path)
    np.testing.assert_allclose(out, pixels / 4095.0, atol=1e-6)  # was pixels & 0xFF / 255: high bits lost


def test_dicom_pixel_spacing_and_ultrasound_regions(tmp_path: Path) -> None:
    from pydicom.dataset import Dataset

    pixels = np.zeros((4, 6), np.uint16)
    plain = read_header(_dicom(tmp_path / "plain.dcm", pixels))
    assert plain.spacing_mm is None
    spaced = read_header(_dicom(tmp_path / "spaced.dcm", pixels, PixelSpacing=[0.2, 0.1]))
    assert spaced.spacing_mm == pytest.approx((0.2, 0.1))
    region = Dataset()
    region.PhysicalUnitsXDirection = 3  # cm
    region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = 0.005  # cm per pixel -> 0.05 mm
    region.PhysicalDeltaY = 0.01
    us = read_header(_dicom(tmp_path / "us.dcm", pixels, SequenceOfUltrasoundRegions=[region]))
    assert us.spacing_mm == pytest.approx((0.1, 0.05))
    Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "p.png")
    assert read_header(tmp_path / "p.png").spacing_mm is None


def test_12bit_data_in_16bit_png_warns_in_prediction_decoding_too(tmp_path: Path) -> None:
    # read_frames is what rlar predict and rlar serve decode with: the same warning as training's read_image,
    # and a note that reaches the report (issue 23).
    from rlar.data.io import read_frames

    path = tmp_path / "twelve.png"
    Image.fromarray(np.array([[0, 1000], [2500, 4095]], dtype=np.uint16)).save(path)
    with pytest.warns(DataWarning, match="use only 12 of the 16 bits") as caught:
        decoded = read_frames(path.read_bytes(), name="upload.png")
    assert len(caught) == 1 and any("use only 12 of the 16 bits" in note for note in decoded.notes)
    assert decoded.notes[0].startswith("upload.png: ")
    full = tmp_path / "full.png"
    Image.fromarray(np.array([[0, 65535]], dtype=np.uint16)).save(full)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        assert read_frames(full).notes == []
