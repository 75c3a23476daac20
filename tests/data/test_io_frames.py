"""Every frame of every format is bounded before decoding (issue 23, item 1): TIFF pages, MPO pictures, APNG
frames, DICOM frames and their embedded codestreams. The hostile files are built small, by the memory benchmark's
writers; none of them is decoded here (each test would allocate hundreds of MB on the code before the fix)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rlar.data import io as rio
from rlar.data.io import declared_values, read_frames, read_header, read_image
from rlar.errors import DataError
from tests._benchmarks import load_benchmark

CAP = 1_000_000


def _benchmark():
    return load_benchmark("decode_memory")


bench = _benchmark()


@pytest.fixture
def no_pillow_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any Pillow frame is decoded (the refusal must come from the headers alone)."""

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("a frame was decoded")

    monkeypatch.setattr(rio, "_pillow_array", boom)


def test_tiff_with_a_huge_second_page_is_refused_before_decoding(tmp_path: Path, no_pillow_decode: None) -> None:
    path = bench.write_tiff_pages(tmp_path / "pages.tif", [(16, 16), (1200, 1000)])
    assert path.stat().st_size < 10_000
    header = read_header(path)
    assert (header.width, header.height, header.frames) == (16, 16, 2)
    assert header.total_values == declared_values(path.read_bytes()) == 256 + 1_200_000
    for source in (path, path.read_bytes()):
        with pytest.raises(DataError, match=r"frame 2 of 2 declares 1200x1000 .*refused before decoding"):
            read_frames(source, max_pixels=CAP)


def test_first_page_of_the_same_tiff_is_still_read_for_training(tmp_path: Path) -> None:
    path = bench.write_tiff_pages(tmp_path / "pages.tif", [(16, 16), (1200, 1000)])
    assert read_image(path, max_pixels=CAP).shape == (16, 16)  # training decodes the first page only
    frames = bench.write_tiff_pages(tmp_path / "two.tif", [(16, 16), (20, 10)])
    assert [f.shape for f in read_frames(frames, max_pixels=CAP).frames] == [(16, 16), (10, 20)]


def test_mpo_with_a_huge_second_picture_is_refused_before_decoding(tmp_path: Path, no_pillow_decode: None) -> None:
    path = bench.write_mpo(tmp_path / "pictures.mpo", [(16, 16), (1500, 1000)])
    assert read_header(path).total_values == 256 + 1_500_000
    with pytest.raises(DataError, match=r"MPO frames .* frame 2 of 2 declares 1500x1000 .*refused before decoding"):
        read_frames(path.read_bytes(), name="upload.jpg", max_pixels=CAP)


def test_apng_counts_every_frame_of_its_canvas(tmp_path: Path, no_pillow_decode: None) -> None:
    path = bench.write_apng(tmp_path / "clip.png", 300, 20)
    assert read_header(path).total_values == 300 * 300 * 20
    with pytest.raises(DataError, match=r"20 frame\(s\) = 1,800,000 values .*refused before decoding"):
        read_frames(path, max_pixels=CAP)


def test_dicom_jpeg_codestream_larger_than_rows_x_columns_is_refused(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import pydicom.pixels

    liar = bench.patched_jpeg_bytes(12000, 12000)
    assert len(liar) < 2000
    path = bench.write_jpeg_dicom(tmp_path / "liar.dcm", 16, 16, [liar])
    monkeypatch.setattr(pydicom.pixels, "pixel_array", lambda *a, **k: pytest.fail("pixels were decoded"))
    with pytest.raises(DataError, match=r"frame 1 of 1: embedded JPEG codestream declares 12000x12000 .*"
                                        r"Columns x Rows 16x16 .*refused before decoding"):
        read_frames(path)


def test_dicom_later_frame_is_checked_and_honest_frames_decode(tmp_path: Path) -> None:
    honest = bench.jpeg_bytes(16, 16, value=200)
    path = bench.write_jpeg_dicom(tmp_path / "clip.dcm", 16, 16, [honest, bench.patched_jpeg_bytes(600, 600)])
    with pytest.raises(DataError, match=r"frame 2 of 2: embedded JPEG codestream declares 600x600"):
        read_frames(path.read_bytes(), name="clip-upload")
    first = read_image(path)  # training decodes only frame 1, the honest one
    assert first.shape == (16, 16) and abs(float(first.mean()) - 200 / 255) < 0.02
    good = bench.write_jpeg_dicom(tmp_path / "good.dcm", 16, 16, [honest, honest])
    assert len(read_frames(good).frames) == 2


def test_dicom_jpeg2000_codestream_is_checked(tmp_path: Path) -> None:
    import io

    from PIL import Image, features
    from pydicom.uid import JPEG2000Lossless

    if not features.check("jpg_2000"):
        pytest.skip("Pillow built without OpenJPEG")
    buffer = io.BytesIO()
    Image.new("L", (64, 48), 7).save(buffer, format="JPEG2000", irreversible=False)
    ds = bench._dicom_dataset(16, 16, JPEG2000Lossless)
    path = bench._save_encapsulated(ds, tmp_path / "j2k.dcm", [buffer.getvalue()])
    with pytest.raises(DataError, match=r"embedded JPEG 2000 codestream declares 64x48 .*refused before decoding"):
        read_frames(path)


def test_dicom_rle_segment_expanding_past_rows_x_columns_is_refused(tmp_path: Path) -> None:
    path = bench.write_rle_dicom(tmp_path / "expand.dcm", 16, 16, decoded_bytes=5_000_000)
    assert path.stat().st_size < 100_000
    with pytest.raises(DataError, match=r"RLE segment 1 expands to more than the 256 bytes .*refused before decoding"):
        read_frames(path)
    assert read_image(bench.write_rle_dicom(tmp_path / "fine.dcm", 16, 16)).shape == (16, 16)


def test_deflated_and_unknown_compressed_dicom_are_refused_from_the_file_meta(tmp_path: Path) -> None:
    from pydicom.uid import MPEG2MPML, DeflatedExplicitVRLittleEndian

    from tests._dicom_base import ultrasound_dataset

    ds = ultrasound_dataset()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = np.zeros((8, 8), np.uint8).tobytes()
    path = tmp_path / "deflated.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(DataError, match="deflated transfer syntax is not supported"):
        read_header(path)
    video = bench._save_encapsulated(bench._dicom_dataset(16, 16, MPEG2MPML), tmp_path / "video.dcm", [b"\x00" * 64])
    with pytest.raises(DataError, match=r"transfer syntax .* not supported: its frames' sizes cannot be checked"):
        read_frames(video)
