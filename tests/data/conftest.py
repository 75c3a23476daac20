"""Writers of tiny fake datasets for the data-source tests (exposed as fixtures: tests/ is not a package).

Every writer produces pixels that identify their item (``pattern(seed)``), so a test can tell that the
adapter decoded *the right* file, not merely *a* file.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image


def pattern(seed: int, shape: tuple[int, int] = (24, 32)) -> np.ndarray:
    """A uint8 image unique to ``seed``: a constant level plus a horizontal ramp (never saturates)."""
    h, w = shape
    ramp = np.tile(np.arange(w, dtype=np.int64) % 64, (h, 1))
    return ((seed * 37) % 128 + ramp).astype(np.uint8)


def box_mask(shape: tuple[int, int] = (24, 32), top: int = 5, left: int = 6, size: int = 8) -> np.ndarray:
    """A uint8 0/255 square nodule mask."""
    mask = np.zeros(shape, dtype=np.uint8)
    mask[top : top + size, left : left + size] = 255
    return mask


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array)).save(path)
    return path


def write_dicom(path: Path, array: np.ndarray) -> Path:
    """Write an 8-bit MONOCHROME2 DICOM file with pydicom (uncompressed, explicit VR little endian)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.set_pixel_data(np.asarray(array, dtype=np.uint8), photometric_interpretation="MONOCHROME2", bits_stored=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


AIMI_COLUMNS = (
    "annot_id", "age", "sex", "location", "size_x", "size_y", "size_z", "ti-rads_composition",
    "ti-rads_echogenicity", "ti-rads_shape", "ti-rads_margin", "ti-rads_echogenicfoci", "ti-rads_level",
    "histopath_diagnosis",
)


def write_aimi_hdf5(
    path: Path,
    frames_per_clip: dict[str, int],
    shape: tuple[int, int] = (64, 64),
    shuffle_seed: int | None = 0,
    chunked: bool = True,
) -> dict[tuple[str, int], int]:
    """Write an AIMI-style ``dataset.hdf5``; returns (clip, frame) -> row. Rows are shuffled (when a seed is
    given) so that a reader relying on row order instead of ``annot_id``/``frame_num`` fails.

    Pixel content of a row: ``pattern(row)``; mask: a box whose left edge is ``frame`` (so it moves per frame).
    """
    import h5py

    keys = [(annot, frame) for annot, n in frames_per_clip.items() for frame in range(n)]
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(keys))
        keys = [keys[i] for i in order]
    n, (h, w) = len(keys), shape
    path.parent.mkdir(parents=True, exist_ok=True)
    chunks = (1, h, w) if chunked else None  # one frame per chunk, like a frame-wise reader would want
    images = np.stack([pattern(row, shape) for row in range(n)]) if n else np.zeros((0, h, w), np.uint8)
    masks = np.zeros((n, h, w), dtype=np.uint8)
    for row, (_, frame) in enumerate(keys):
        masks[row] = box_mask(shape, top=4, left=frame % (w - 8), size=8)
    with h5py.File(path, "w") as f:
        f.create_dataset("image", data=images, chunks=chunks)
        f.create_dataset("mask", data=masks, chunks=chunks)
        f.create_dataset("annot_id", data=np.array([a.encode() for a, _ in keys], dtype="S8"))
        f.create_dataset("frame_num", data=np.array([fr for _, fr in keys], dtype=np.int64))
    return {key: row for row, key in enumerate(keys)}


@pytest.fixture
def writers() -> SimpleNamespace:
    """The writer helpers, for tests that cannot import this conftest."""
    return SimpleNamespace(
        pattern=pattern,
        box_mask=box_mask,
        png=write_png,
        dicom=write_dicom,
        csv=write_csv,
        aimi_hdf5=write_aimi_hdf5,
        aimi_columns=AIMI_COLUMNS,
    )

