"""Folder source: refuses what is not a dataset, shares the descriptor normaliser, reports skips by reason,
carries DICOM pixel spacing to the radiomics target (issue 11, items 4 and 9)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rlar.data.sources import open_source
from rlar.errors import DataError
from rlar.radiomics import compute_targets


def test_existing_folder_that_is_not_a_dataset_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="no 'images/' folder") as info:
        open_source("folder", tmp_path)
    assert "expected <root>/images/" in info.value.reason
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "readme.txt").write_text("not an image")
    with pytest.raises(DataError, match="no image file"):
        open_source("folder", tmp_path)


def _folder(root: Path, rows: list[str], names: list[str]) -> Path:
    (root / "images").mkdir(parents=True)
    for name in names:
        Image.fromarray(np.full((20, 24), 100, np.uint8)).save(root / "images" / f"{name}.png")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_ddti_spellings_and_calcifications_alias(tmp_path: Path) -> None:
    root = _folder(tmp_path, ["image_id,composition,calcifications", "a,dense,non", "b,predominantly solid,microcalcification"], ["a", "b"])
    source = open_source("folder", root)
    by_id = {info.image_id: info.descriptors for info in source.infos}
    assert by_id["a"]["echogenic_foci"] == "none" and by_id["a"]["composition"] == "solid"
    assert by_id["b"]["echogenic_foci"] == "punctate" and by_id["b"]["composition"] == "mixed_solid"


def test_repeated_label_problems_are_one_skip_per_reason(tmp_path: Path) -> None:
    names = [f"i{k}" for k in range(12)]
    rows = ["image_id,echogenicity"] + [f"{n},glowing" for n in names[:11]] + [f"{names[11]},sparkly"]
    source = open_source("folder", _folder(tmp_path, rows, names))
    glowing = [s for s in source.skips if "'glowing'" in s.reason]
    assert len(glowing) == 1 and glowing[0].item.startswith("11 items (i0, i1,") and "(1 more)" in glowing[0].item
    assert [s.item for s in source.skips if "'sparkly'" in s.reason] == ["i11"]


def _dicom_with_spacing(path: Path, pixels: np.ndarray, spacing: list[float]) -> None:

    from tests._dicom_base import ultrasound_dataset

    ds = ultrasound_dataset()
    ds.PixelSpacing = spacing
    ds.set_pixel_data(pixels, photometric_interpretation="MONOCHROME2", bits_stored=8)
    ds.save_as(path, enforce_file_format=True)


def test_dicom_spacing_reaches_the_sample_and_taller_than_wide(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rng = np.random.default_rng(0)
    pixels = (rng.random((80, 80)) * 200 + 20).astype(np.uint8)
    mask = np.zeros((80, 80), np.uint8)
    mask[25:55, 25:55] = 255  # 30 x 30 pixels
    for name, spacing in (("square", [0.1, 0.1]), ("tall", [0.2, 0.1])):
        _dicom_with_spacing(tmp_path / "images" / f"{name}.dcm", pixels, spacing)
        Image.fromarray(mask).save(tmp_path / "masks" / f"{name}.png")
    source = open_source("folder", tmp_path)
    spacings = {info.image_id: info.spacing_mm for info in source.infos}
    assert spacings == {"square": pytest.approx((0.1, 0.1)), "tall": pytest.approx((0.2, 0.1))}
    assert source[0].spacing_mm is not None
    frame = compute_targets(source, tmp_path / "cache", progress=False)
    assert frame.loc["square", "taller_than_wide"] == pytest.approx(1.0)
    assert frame.loc["tall", "taller_than_wide"] == pytest.approx(2.0)  # 6 mm tall, 3 mm wide
