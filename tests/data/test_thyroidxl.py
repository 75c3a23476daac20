"""ThyroidXLSource: official split folders, masks by file name, patient info JSON in both supported forms."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rlar.data.sources import open_source
from rlar.data.sources.base import Source
from rlar.data.sources.thyroidxl import ThyroidXLSource
from rlar.errors import ConfigError, DataError

PATIENTS = {
    "P1": {
        "images": ["0001.png", "0002.png"],
        "nodule_1": {"TIRADS": 4, "Composition": "Solid", "echogenicity": "hypoechoic"},
        "nodule_2": {"TIRADS": 2},  # a second nodule with another level: reported in a note
        "age": 51,
    },
    "P2": {"images": ["train/images/0003.jpg"], "nodule_1": {"TIRADS": "TR3"}},
    "P3": {"images": ["0004.png", "9999.png"], "nodule_1": {"TIRADS": "7"}},
}


def two_level_mask(writers: SimpleNamespace) -> np.ndarray:
    """255 box (64 px) plus a 100-valued strip that the > 127 threshold must ignore."""
    mask: np.ndarray = writers.box_mask(size=8)
    mask[20:22, :] = 100
    return mask


@pytest.fixture
def xl_root(tmp_path: Path, writers: SimpleNamespace) -> Path:
    root = tmp_path / "thyroidxl"
    for seed, name in ((1, "0001.png"), (2, "0002.png")):
        writers.png(root / "train" / "images" / name, writers.pattern(seed))
        writers.png(root / "train" / "masks" / name, two_level_mask(writers))
    writers.png(root / "train" / "images" / "0003.jpg", writers.pattern(3))  # no mask
    for seed, name in ((4, "0004.png"), (5, "0005.png")):
        writers.png(root / "test" / "images" / name, writers.pattern(seed))
        writers.png(root / "test" / "masks" / name, writers.box_mask(size=4))
    (root / "patient_info.json").write_text(json.dumps(PATIENTS))
    return root


def reasons(source: Source, item: str) -> list[str]:
    return [s.reason for s in source.skips if s.item == item]


def test_scans_both_splits_with_patients_labels_and_official_split(xl_root: Path) -> None:
    source = ThyroidXLSource(xl_root)
    assert source.name == "thyroidxl" and source.scale == "acr"
    by_id = {i.image_id: i for i in source.infos}
    assert sorted(by_id) == ["0001", "0002", "0003", "0004", "0005"]
    assert source.official_split == {"0001": "train", "0002": "train", "0003": "train", "0004": "test", "0005": "test"}
    assert {k: v.patient_id for k, v in by_id.items()} == {
        "0001": "P1", "0002": "P1", "0003": "P2", "0004": "P3", "0005": "0005"
    }
    assert {k: v.tirads for k, v in by_id.items()} == {
        "0001": "TR4", "0002": "TR4", "0003": "TR3", "0004": None, "0005": None
    }
    assert by_id["0001"].descriptors["composition"] == "solid"
    assert by_id["0001"].descriptors["echogenicity"] == "hypoechoic"
    assert by_id["0003"].descriptors == dict.fromkeys(by_id["0003"].descriptors)  # all unknown
    assert {k: v.has_mask for k, v in by_id.items()} == {
        "0001": True, "0002": True, "0003": False, "0004": True, "0005": True
    }
    # invalid level: unknown + skip naming patient and value; missing listed file: skip
    assert any("'7'" in r for r in reasons(source, "P3"))
    assert any("not found" in r and "P3" in r for r in reasons(source, "9999.png"))
    # unmatched image: kept, explained in a note (not a skip: nothing dropped)
    assert any("0005.png" in n and "no patient entry" in n for n in source.notes), source.notes
    assert any("different TI-RADS" in n and "P1" in n for n in source.notes), source.notes
    assert len(source.skips) == 2


def test_loads_pixels_thresholded_masks_and_missing_mask(xl_root: Path, writers: SimpleNamespace) -> None:
    source = ThyroidXLSource(xl_root)
    by_id = {s.image_id: k for k, s in enumerate(source.infos)}
    first = source[by_id["0001"]]
    np.testing.assert_allclose(first.image, writers.pattern(1) / 255.0, atol=1e-6)
    assert first.mask is not None and int(first.mask.sum()) == 64  # the 100-valued strip is below threshold
    assert first.extras["official_split"] == "train"
    third = source[by_id["0003"]]
    assert third.mask is None and third.image.shape == (24, 32)
    fourth = source[by_id["0004"]]
    assert fourth.mask is not None and int(fourth.mask.sum()) == 16


def test_split_option_restricts_to_one_official_split(xl_root: Path) -> None:
    train = open_source("thyroidxl", xl_root, split="train")
    assert isinstance(train, ThyroidXLSource)
    assert [i.image_id for i in train.infos] == ["0001", "0002", "0003"]
    assert set(train.official_split.values()) == {"train"}
    test = ThyroidXLSource(xl_root, split="test")
    assert [i.image_id for i in test.infos] == ["0004", "0005"]
    # a file of the other split is not "missing" just because that split was not requested
    assert not any("0001" in s.item for s in test.skips)
    with pytest.raises(ConfigError, match="split"):
        ThyroidXLSource(xl_root, split="val")


def test_list_form_json_with_id_field_and_wrapper(tmp_path: Path, writers: SimpleNamespace) -> None:
    root = tmp_path / "listform"
    for seed, name in ((1, "a.png"), (2, "b.png"), (3, "c.png")):
        writers.png(root / "train" / "images" / name, writers.pattern(seed))
    patients = [
        {"patient_id": "X1", "images": ["a.png"], "nodule_1": {"TIRADS": 5}},
        {"ID": 7, "images": ["b.png"], "nodule_1": {"tirads": "2"}},
        {"images": ["c.png"], "nodule_1": {"TIRADS": 1}},  # no id field
    ]
    (root / "info.json").write_text(json.dumps({"patients": patients}))
    source = ThyroidXLSource(root)
    by_id = {i.image_id: i for i in source.infos}
    assert (by_id["a"].patient_id, by_id["a"].tirads) == ("X1", "TR5")
    assert (by_id["b"].patient_id, by_id["b"].tirads) == ("7", "TR2")
    assert (by_id["c"].patient_id, by_id["c"].tirads) == ("c", None)
    assert any("no id field" in s.reason for s in source.skips if s.item == "info.json[2]")


def test_image_claimed_by_two_patients_is_skipped(tmp_path: Path, writers: SimpleNamespace) -> None:
    root = tmp_path / "clash"
    for seed, name in ((1, "a.png"), (2, "b.png")):
        writers.png(root / "test" / "images" / name, writers.pattern(seed))
    info = {"P1": {"images": ["a.png", "b.png"], "nodule_1": {"TIRADS": 3}}, "P2": {"images": ["a.png"]}}
    (root / "patients.json").write_text(json.dumps(info))
    source = ThyroidXLSource(root)
    assert [i.image_id for i in source.infos] == ["b"]
    assert any("several patients" in r for r in reasons(source, "a.png"))


def test_json_discovery_option_and_errors(tmp_path: Path, writers: SimpleNamespace) -> None:
    root = tmp_path / "many"
    writers.png(root / "train" / "images" / "a.png", writers.pattern(1))
    (root / "one.json").write_text(json.dumps({"P1": {"images": ["a.png"], "nodule_1": {"TIRADS": 2}}}))
    (root / "two.json").write_text("[]")
    with pytest.raises(DataError, match="info_json"):
        ThyroidXLSource(root)
    chosen = ThyroidXLSource(root, info_json="one.json")
    assert chosen.infos[0].patient_id == "P1" and chosen.infos[0].tirads == "TR2"
    with pytest.raises(DataError, match="does not exist"):
        ThyroidXLSource(root, info_json="nope.json")
    (root / "two.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot read patient info JSON") as err:
        ThyroidXLSource(root, info_json="two.json")
    assert "two.json" in err.value.item


def test_no_json_every_image_its_own_patient_and_missing_layout_errors(tmp_path: Path,
                                                                       writers: SimpleNamespace) -> None:
    root = tmp_path / "nojson"
    writers.png(root / "train" / "images" / "a.png", writers.pattern(1))
    source = ThyroidXLSource(root)
    assert [(i.image_id, i.patient_id, i.tirads) for i in source.infos] == [("a", "a", None)]
    assert any("no patient info JSON" in n for n in source.notes)
    with pytest.raises(DataError, match="'test'"):
        ThyroidXLSource(root, split="test")
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match="train/images"):
        ThyroidXLSource(tmp_path / "flat")
