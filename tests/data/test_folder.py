"""FolderSource: users' own images + optional masks + labels.csv, and the shared descriptor normaliser."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rlar.data.descriptors import normalise_descriptor
from rlar.data.record import DESCRIPTORS
from rlar.data.sources import open_source
from rlar.data.sources.base import Source
from rlar.data.sources.folder import FolderSource
from rlar.errors import ConfigError, DataError

HEADER = ["image_id", "patient_id", "tirads", "composition", "echogenicity", "shape", "margin", "echogenic_foci", "notes"]


def skip_reasons(source: Source, item: str) -> list[str]:
    return [s.reason for s in source.skips if s.item == item]


@pytest.fixture
def ddti_folder(tmp_path: Path, writers: SimpleNamespace) -> Path:
    """Three images (PNG, PNG, DICOM), two masks, DDTI-scale labels with messy descriptor spellings."""
    root = tmp_path / "mine"
    writers.png(root / "images" / "a.png", writers.pattern(1))
    writers.png(root / "images" / "b.png", np.stack([writers.pattern(2)] * 3, axis=-1))  # RGB file
    writers.dicom(root / "images" / "c.dcm", writers.pattern(3))
    writers.png(root / "masks" / "a.png", writers.box_mask(size=8))
    writers.png(root / "masks" / "c.png", writers.box_mask(size=4))
    writers.csv(
        root / "labels.csv",
        HEADER,
        [
            ["a", "P1", "4a", "Solid", "Very Hypoechoic", "Taller-Than-Wide", "lobulated/irregular", "Microcalcifications", "x"],
            ["b", "P1", "3", "", "isoechoic", "wider_than_tall", "smooth", "none", ""],
            ["c", "P2", "5", "mixed cystic and solid", "", "", "Extra-thyroidal extension", "macrocalcifications, punctate", ""],
        ],
    )
    return root


def test_reads_ids_patients_labels_descriptors_and_detects_ddti_scale(ddti_folder: Path) -> None:
    source = FolderSource(ddti_folder)
    assert [i.image_id for i in source.infos] == ["a", "b", "c"]
    assert [i.patient_id for i in source.infos] == ["P1", "P1", "P2"]
    assert source.scale == "ddti" and all(i.scale == "ddti" for i in source.infos)
    assert [i.tirads for i in source.infos] == ["4a", "3", "5"]
    assert any("ddti scale" in n and "4a" in n for n in source.notes), source.notes
    a, b, c = (i.descriptors for i in source.infos)
    assert a == {
        "composition": "solid",
        "echogenicity": "very_hypoechoic",
        "shape": "taller_than_wide",
        "margin": "lobulated_irregular",
        "echogenic_foci": "punctate",
    }
    assert b["composition"] is None and b["echogenicity"] == "isoechoic" and b["echogenic_foci"] == "none"
    # several foci categories: the most suspicious (ACR points) is kept
    assert c == {"composition": "mixed", "echogenicity": None, "shape": None, "margin": "extrathyroidal_extension",
                 "echogenic_foci": "punctate"}
    assert list(source.skips) == []
    assert [i.has_mask for i in source.infos] == [True, False, True]


def test_decodes_png_rgb_and_dicom_pixels_and_masks(ddti_folder: Path, writers: SimpleNamespace) -> None:
    source = FolderSource(ddti_folder)
    a, b, c = source[0], source[1], source[2]
    for sample, seed in ((a, 1), (b, 2), (c, 3)):
        assert sample.image.dtype == np.float32 and sample.image.shape == (24, 32)
        np.testing.assert_allclose(sample.image, writers.pattern(seed) / 255.0, atol=1e-6)
    assert a.mask is not None and a.mask.dtype == bool and int(a.mask.sum()) == 64
    assert b.mask is None
    assert c.mask is not None and int(c.mask.sum()) == 16


def test_acr_scale_detected_from_tr_values(tmp_path: Path, writers: SimpleNamespace) -> None:
    root = tmp_path / "acr"
    for k, name in enumerate(["x", "y", "z"]):
        writers.png(root / "images" / f"{name}.png", writers.pattern(k))
    writers.csv(root / "labels.csv", ["image_id", "patient_id", "tirads"], [["x", "1", "TR3"], ["y", "2", "1"], ["z", "3", "tr5"]])
    source = FolderSource(root)
    assert source.scale == "acr"
    assert [i.tirads for i in source.infos] == ["TR3", "TR1", "TR5"]
    assert any("acr scale" in n and "tr3" in n for n in source.notes), source.notes


def test_ambiguous_values_read_as_acr_with_note_and_explicit_scale_overrides(tmp_path: Path,
                                                                             writers: SimpleNamespace) -> None:
    root = tmp_path / "amb"
    for k, name in enumerate(["x", "y"]):
        writers.png(root / "images" / f"{name}.png", writers.pattern(k))
    writers.csv(root / "labels.csv", ["image_id", "patient_id", "tirads"], [["x", "1", "2"], ["y", "2", "5"]])
    detected = FolderSource(root)
    assert detected.scale == "acr"
    assert [i.tirads for i in detected.infos] == ["TR2", "TR5"]
    assert any("ambiguous" in n for n in detected.notes), detected.notes
    forced = open_source("folder", root, scale="ddti")
    assert isinstance(forced, FolderSource)
    assert forced.scale == "ddti"
    assert [i.tirads for i in forced.infos] == ["2", "5"]
    assert any("set explicitly" in n for n in forced.notes)
    with pytest.raises(ConfigError, match="scale"):
        FolderSource(root, scale="eu")


def test_missing_labels_csv_makes_each_image_its_own_patient(tmp_path: Path, writers: SimpleNamespace) -> None:
    root = tmp_path / "bare"
    for k, name in enumerate(["p", "q"]):
        writers.png(root / "images" / f"{name}.jpg", writers.pattern(k))
    source = FolderSource(root)
    assert [(i.image_id, i.patient_id, i.tirads) for i in source.infos] == [("p", "p", None), ("q", "q", None)]
    assert all(set(i.descriptors) == set(DESCRIPTORS) and not any(i.descriptors.values()) for i in source.infos)
    assert any("no labels.csv" in n for n in source.notes)
    assert any("masks/" in n for n in source.notes)
    # JPEG is lossy: close to the written pattern, not equal
    assert np.abs(source[0].image - writers.pattern(0) / 255.0).mean() < 0.02


def test_csv_row_without_image_is_skipped_and_unlisted_image_is_kept(tmp_path: Path, writers: SimpleNamespace) -> None:
    root = tmp_path / "partial"
    writers.png(root / "images" / "listed.png", writers.pattern(1))
    writers.png(root / "images" / "unlisted.png", writers.pattern(2))
    writers.csv(root / "labels.csv", ["image_id", "patient_id", "tirads"], [["listed.png", "P9", "TR2"], ["ghost", "P9", "TR4"]])
    source = FolderSource(root)
    ids = {i.image_id: i for i in source.infos}
    assert set(ids) == {"listed", "unlisted"}
    assert ids["listed"].patient_id == "P9" and ids["listed"].tirads == "TR2"  # "listed.png" resolved to the stem
    assert ids["unlisted"].patient_id == "unlisted" and ids["unlisted"].tirads is None
    assert any("no image file" in r for r in skip_reasons(source, "ghost"))
    assert any("1 image(s) not in labels.csv" in n and "unlisted" in n for n in source.notes), source.notes


def test_duplicate_ids_with_different_extensions_are_skipped(tmp_path: Path, writers: SimpleNamespace) -> None:
    root = tmp_path / "dup"
    writers.png(root / "images" / "d.png", writers.pattern(1))
    writers.png(root / "images" / "d.tif", writers.pattern(2))
    writers.png(root / "images" / "e.png", writers.pattern(3))
    (root / "images" / "readme.txt").write_text("not an image")
    source = FolderSource(root)
    assert [i.image_id for i in source.infos] == ["e"]
    reasons = skip_reasons(source, "d")
    assert len(reasons) == 1 and "d.png" in reasons[0] and "d.tif" in reasons[0]
    assert any("unsupported image file type" in s.reason for s in source.skips if s.item.endswith("readme.txt"))


def test_invalid_tirads_and_descriptor_values_become_unknown_with_a_skip(tmp_path: Path,
                                                                         writers: SimpleNamespace) -> None:
    root = tmp_path / "bad"
    for k, name in enumerate(["g", "h", "i"]):
        writers.png(root / "images" / f"{name}.png", writers.pattern(k))
    writers.csv(
        root / "labels.csv",
        ["image_id", "patient_id", "tirads", "echogenicity", "calcifications"],
        [["g", "1", "4b", "glowing", "punctate"], ["h", "2", "4d", "hypoechoic", "none"], ["i", "3", "6", "", ""]],
    )
    source = FolderSource(root)
    assert source.scale == "ddti"
    by_id = {i.image_id: i for i in source.infos}
    assert len(by_id) == 3  # invalid labels never drop the image
    assert by_id["g"].tirads == "4b" and by_id["g"].descriptors["echogenicity"] is None
    assert by_id["g"].descriptors["echogenic_foci"] == "punctate"  # 'calcifications' column accepted
    assert by_id["h"].tirads is None and by_id["h"].descriptors["echogenicity"] == "hypoechoic"
    assert by_id["i"].tirads is None
    assert any("'glowing'" in r and "echogenicity" in r for r in skip_reasons(source, "g"))
    assert any("'4d'" in r and "ddti" in r for r in skip_reasons(source, "h"))
    assert any("'6'" in r for r in skip_reasons(source, "i"))


def test_conflicting_duplicate_rows_skip_the_image_identical_rows_merge(tmp_path: Path,
                                                                        writers: SimpleNamespace) -> None:
    root = tmp_path / "rows"
    for k, name in enumerate(["m", "n"]):
        writers.png(root / "images" / f"{name}.png", writers.pattern(k))
    writers.csv(
        root / "labels.csv",
        ["image_id", "patient_id", "tirads"],
        [["m", "1", "TR3"], ["m", "1", "TR4"], ["n", "2", "TR2"], ["n", "2", "TR2"]],
    )
    source = FolderSource(root)
    assert [(i.image_id, i.tirads) for i in source.infos] == [("n", "TR2")]
    assert any("conflicting rows" in r for r in skip_reasons(source, "m"))


def test_mask_of_wrong_size_fails_at_load_naming_both_sizes(tmp_path: Path, writers: SimpleNamespace) -> None:
    root = tmp_path / "size"
    writers.png(root / "images" / "s.png", writers.pattern(1, shape=(24, 32)))
    writers.png(root / "masks" / "s.png", writers.box_mask(shape=(20, 30)))
    writers.png(root / "masks" / "orphan.png", writers.box_mask())
    source = FolderSource(root)
    assert source.infos[0].has_mask
    assert any("no image" in r for r in skip_reasons(source, str(root / "masks" / "orphan.png")))
    with pytest.raises(DataError) as info:
        source[0]
    assert "s.png" in info.value.item
    assert "30x20" in info.value.reason and "32x24" in info.value.reason
    source.verify(progress=False)
    assert len(source) == 0 and any("30x20" in s.reason for s in source.skips)


def test_missing_images_folder_and_missing_image_id_column_are_errors(tmp_path: Path, writers: SimpleNamespace) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="images/"):
        FolderSource(tmp_path / "empty")
    root = tmp_path / "nocol"
    writers.png(root / "images" / "a.png", writers.pattern(1))
    writers.csv(root / "labels.csv", ["file", "tirads"], [["a", "3"]])
    with pytest.raises(DataError, match="image_id"):
        FolderSource(root)


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("composition", "Almost completely solid", "solid"),
        ("composition", "SPONGIFORM", "spongiform"),
        ("composition", "mixed_cystic", "mixed_cystic"),
        ("echogenicity", "very-hypoechoic", "very_hypoechoic"),
        ("echogenicity", "Markedly hypoechoic", "very_hypoechoic"),
        ("shape", "Wider than tall", "wider_than_tall"),
        ("margin", "Ill- defined", "ill_defined"),
        ("margin", "Lobulated or irregular", "lobulated_irregular"),
        ("margin", "Spiculated", "lobulated_irregular"),
        ("echogenicity", "marked hypoechogenicity", "very_hypoechoic"),
        ("echogenic_foci", "Peripheral (rim) calcifications", "rim"),
        ("echogenic_foci", "Large comet-tail artifacts", "comet_tail"),
        ("echogenic_foci", "macrocalcifications; rim", "rim"),
        ("echogenic_foci", "None", "none"),
        ("margin", "", None),
        ("margin", float("nan"), None),
        ("shape", None, None),
    ],
)
def test_normalise_descriptor_maps_spellings(name: str, raw: object, expected: str | None) -> None:
    assert normalise_descriptor(name, raw) == expected


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("echogenicity", "hyperechoic or isoechoic"),  # an ACR points bucket, not one term
        ("composition", "none"),
        ("echogenic_foci", "none, punctate"),  # contradictory
        ("shape", "round"),
    ],
)
def test_normalise_descriptor_rejects_values_that_name_no_single_term(name: str, raw: str) -> None:
    with pytest.raises(DataError) as info:
        normalise_descriptor(name, raw)
    assert info.value.item == raw


def test_normalise_descriptor_unknown_descriptor_name() -> None:
    with pytest.raises(ConfigError, match="descriptor"):
        normalise_descriptor("colour", "red")
