"""Image/mask decoding: every format we accept, and every bad file gives a DataError naming file and reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rlar.data.io import (
    dicom_calibration,
    read_array,
    read_frames,
    read_header,
    read_image,
    read_mask,
    sniff_format,
    to_grey_unit,
)
from rlar.errors import DataError, DataWarning


def _png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def _dicom(
    path: Path,
    pixels: np.ndarray | None,
    bits_stored: int = 12,
    photometric: str = "MONOCHROME2",
    suffix_free: bool = False,
) -> Path:
    """Write a minimal single-frame ultrasound DICOM (Part 10, explicit VR little endian)."""

    from tests._dicom_base import ultrasound_dataset

    ds = ultrasound_dataset()
    if pixels is not None:
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = 16
        ds.BitsStored = bits_stored
        ds.HighBit = bits_stored - 1
        ds.PixelRepresentation = 0
        ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


# ------------------------------------------------------------------------------------------- bad files
def test_missing_file_names_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(DataError, match="nope.png: file not found"):
        read_image(path)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.touch()
    with pytest.raises(DataError) as info:
        read_image(path)
    assert info.value.item == str(path) and "zero-byte" in info.value.reason


def test_corrupt_png_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.png"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(DataError) as info:
        read_image(path)
    assert info.value.item == str(path) and "cannot decode image" in info.value.reason


def test_truncated_png(tmp_path: Path) -> None:
    # A valid header followed by cut-off pixel data must fail at read time, not later in training.
    full = _png(tmp_path / "full.png", np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8))
    cut = tmp_path / "cut.png"
    cut.write_bytes(full.read_bytes()[:200])
    with pytest.raises(DataError, match="cut.png: cannot decode image"):
        read_image(cut)


# ------------------------------------------------------------------------------------------- formats
def test_8bit_grey_png(tmp_path: Path) -> None:
    array = np.array([[0, 51], [204, 255]], dtype=np.uint8)
    out = read_image(_png(tmp_path / "g.png", array))
    assert out.dtype == np.float32 and out.shape == (2, 2)
    np.testing.assert_allclose(out, array / 255.0, atol=1e-6)


def test_16bit_png_scaled_by_full_range(tmp_path: Path) -> None:
    array = np.array([[0, 4095], [32768, 65535]], dtype=np.uint16)
    path = _png(tmp_path / "g16.png", array)
    assert read_array(path).dtype == np.uint16
    out = read_image(path)
    # 4095 stays 4095/65535: no content-dependent "looks 12-bit" rescaling for PNG (no declared depth).
    np.testing.assert_allclose(out, array / 65535.0, atol=1e-6)


def test_dim_16bit_png_not_stretched(tmp_path: Path) -> None:
    # Two 16-bit images with the same pixel value must map to the same grey, whatever their maximum.
    low = _png(tmp_path / "low.png", np.array([[1000, 2000]], dtype=np.uint16))
    high = _png(tmp_path / "high.png", np.array([[1000, 60000]], dtype=np.uint16))
    with pytest.warns(DataWarning, match="11 of the 16 bits"):  # a dim image is reported, never rescaled
        dim = read_image(low)[0, 0]
    assert dim == pytest.approx(read_image(high)[0, 0])


def test_rgba_png_drops_alpha(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = 30, 60, 90
    rgba[..., 3] = [[0, 255], [128, 7]]  # alpha varies but must not change the grey
    out = read_image(_png(tmp_path / "rgba.png", rgba, mode="RGBA"))
    np.testing.assert_allclose(out, np.full((2, 2), 60 / 255.0), atol=1e-6)


def test_grey_alpha_png(tmp_path: Path) -> None:
    la = np.stack([np.array([[10, 200]], dtype=np.uint8), np.array([[255, 0]], dtype=np.uint8)], axis=-1)
    out = read_image(_png(tmp_path / "la.png", la, mode="LA"))
    np.testing.assert_allclose(out, [[10 / 255.0, 200 / 255.0]], atol=1e-6)


def test_palette_png_uses_palette_colours(tmp_path: Path) -> None:
    img = Image.new("P", (3, 1))
    img.putpalette([200, 200, 200, 0, 0, 0, 90, 120, 150] + [0] * (256 * 3 - 9))
    img.putdata([0, 1, 2])
    img.save(tmp_path / "pal.png")
    out = read_image(tmp_path / "pal.png")
    # Index 0 is light grey through the palette: reading raw indices would give 0.0 here.
    np.testing.assert_allclose(out, [[200 / 255.0, 0.0, 120 / 255.0]], atol=1e-6)


def test_rgb_jpeg_is_grey(tmp_path: Path) -> None:
    path = tmp_path / "x.jpg"
    Image.fromarray(np.full((8, 8, 3), 128, dtype=np.uint8)).save(path, quality=95)
    out = read_image(path)
    assert out.shape == (8, 8)
    assert np.allclose(out, 128 / 255.0, atol=2 / 255.0)


def test_tiff_8bit_16bit_and_float(tmp_path: Path) -> None:
    a8 = np.array([[0, 255]], dtype=np.uint8)
    a16 = np.array([[0, 65535]], dtype=np.uint16)
    af = np.array([[0.25, 0.75]], dtype=np.float32)
    Image.fromarray(a8).save(tmp_path / "a8.tif")
    Image.fromarray(a16).save(tmp_path / "a16.tiff")
    Image.fromarray(af).save(tmp_path / "af.tif")
    np.testing.assert_allclose(read_image(tmp_path / "a8.tif"), [[0.0, 1.0]])
    np.testing.assert_allclose(read_image(tmp_path / "a16.tiff"), [[0.0, 1.0]])
    # Floats already in [0, 1] are kept, not min-max stretched to 0..1.
    np.testing.assert_allclose(read_image(tmp_path / "af.tif"), [[0.25, 0.75]])


def test_float_outside_unit_range_is_normalised() -> None:
    out = to_grey_unit(np.array([[-2.0, 0.0, 2.0]]), "x")
    np.testing.assert_allclose(out, [[0.0, 0.5, 1.0]])
    with pytest.raises(DataError, match="NaN"):
        to_grey_unit(np.array([[np.nan, 1.0]]), "x")


def test_dicom_12bit_uses_bits_stored(tmp_path: Path) -> None:
    pixels = np.array([[0, 2048], [4095, 1000]], dtype=np.uint16)
    out = read_image(_dicom(tmp_path / "us.dcm", pixels, bits_stored=12))
    np.testing.assert_allclose(out, pixels / 4095.0, atol=1e-6)


def test_dicom_monochrome1_inverted_within_declared_range(tmp_path: Path) -> None:
    pixels = np.array([[0, 1000]], dtype=np.uint16)
    out = read_image(_dicom(tmp_path / "inv.dcm", pixels, bits_stored=12, photometric="MONOCHROME1"))
    np.testing.assert_allclose(out, [[1.0, (4095 - 1000) / 4095.0]], atol=1e-6)


def test_dicom_detected_without_suffix(tmp_path: Path) -> None:
    pixels = np.array([[0, 4095]], dtype=np.uint16)
    path = _dicom(tmp_path / "IM0001", pixels)
    np.testing.assert_allclose(read_image(path), [[0.0, 1.0]], atol=1e-6)


def test_dicom_without_pixel_data(tmp_path: Path) -> None:
    path = _dicom(tmp_path / "nopix.dcm", None)
    with pytest.raises(DataError) as info:
        read_image(path)
    assert info.value.item == str(path) and "no pixel data" in info.value.reason


def test_not_a_dicom_with_dcm_suffix(tmp_path: Path) -> None:
    path = tmp_path / "fake.dcm"
    path.write_bytes(b"this is not a dicom file" * 10)
    with pytest.raises(DataError, match="fake.dcm: cannot read DICOM"):
        read_image(path)


# ------------------------------------------------------------------------------------ frames (path or bytes)


def test_read_frames_from_bytes_equals_the_file_and_first_frame_is_read_image(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((20, 30), v, dtype=np.uint8)) for v in (10, 128, 250)]
    path = tmp_path / "clip.tif"
    frames[0].save(path, format="TIFF", save_all=True, append_images=frames[1:])
    from_file = read_frames(path)
    from_bytes = read_frames(path.read_bytes(), name="upload.tif")
    assert from_file.format == from_bytes.format == "tiff" and len(from_file.frames) == 3
    for a, b in zip(from_file.frames, from_bytes.frames, strict=True):
        np.testing.assert_array_equal(a, b)
    assert [round(float(f.mean()) * 255) for f in from_file.frames] == [10, 128, 250]
    first = read_frames(path, all_frames=False)
    assert len(first.frames) == 1
    np.testing.assert_array_equal(first.frames[0], read_image(path))
    assert read_header(path.read_bytes()).frames == 3


def test_pixel_cap_counts_every_decoded_frame(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.zeros((20, 30), dtype=np.uint8)) for _ in range(3)]
    path = tmp_path / "clip.tif"
    frames[0].save(path, format="TIFF", save_all=True, append_images=frames[1:])
    assert read_image(path, max_pixels=1000).shape == (20, 30)  # one frame: 600 values
    with pytest.raises(DataError, match=r"3 frame\(s\) = 1,800 values .*refused before decoding") as info:
        read_frames(path.read_bytes(), name="clip-upload", max_pixels=1000)
    assert info.value.item == "clip-upload"


def test_dicom_bytes_give_spacing_origin_and_the_file_rule(tmp_path: Path) -> None:
    pixels = (np.arange(12 * 16) * 20).astype(np.uint16).reshape(12, 16)
    path = _dicom(tmp_path / "a.dcm", pixels, bits_stored=12)
    assert sniff_format(path.read_bytes()[:132]) == "dicom" and sniff_format(b"GIF89a") is None
    from_bytes = read_frames(path.read_bytes(), name="a-upload")
    assert from_bytes.format == "dicom" and from_bytes.spacing_source == "none"
    np.testing.assert_allclose(from_bytes.frames[0], read_image(path), rtol=0, atol=0)

    class Calibrated:
        PixelSpacing = (0.1, 0.1)

    assert dicom_calibration(Calibrated()) == ((0.1, 0.1), "PixelSpacing", [])


def test_empty_bytes_and_unknown_content(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="upload: empty file"):
        read_frames(b"")
    with pytest.raises(DataError, match="x.bin: cannot decode image"):
        read_frames(b"not an image at all" * 10, name="x.bin")


# ------------------------------------------------------------------------------------------- masks
def test_mask_threshold_and_colour(tmp_path: Path) -> None:
    grey = np.array([[0, 1], [127, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(read_mask(_png(tmp_path / "m.png", grey)), grey > 0)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png", threshold=127), grey > 127)
    rgb = np.zeros((1, 2, 3), dtype=np.uint8)
    rgb[0, 1, 0] = 255  # a red annotation counts as nodule
    np.testing.assert_array_equal(read_mask(_png(tmp_path / "c.png", rgb)), [[False, True]])


def test_mask_wrong_size_names_both_sizes(tmp_path: Path) -> None:
    path = _png(tmp_path / "m.png", np.zeros((30, 40), dtype=np.uint8))
    with pytest.raises(DataError) as info:
        read_mask(path, shape=(20, 50))
    assert info.value.item == str(path)
    assert "40x30" in info.value.reason and "50x20" in info.value.reason
    assert read_mask(path, shape=(30, 40)).shape == (30, 40)
