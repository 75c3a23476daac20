"""labels.csv as spreadsheets write it (issue 23): trailing commas must not shift columns, over-full rows are
reported, a BOM is not part of the first column's name."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from rlar.data.sources.folder import FolderSource
from rlar.errors import DataError


@pytest.fixture
def folder(tmp_path: Path, writers: SimpleNamespace) -> Path:
    root = tmp_path / "mine"
    for k, name in enumerate(("a", "b", "c")):
        writers.png(root / "images" / f"{name}.png", writers.pattern(k + 1))
    return root


def test_trailing_commas_do_not_shift_the_columns(folder: Path) -> None:
    (folder / "labels.csv").write_text("image_id,patient_id,tirads,composition\n"
                                       "a,P1,TR3,solid,\nb,P2,TR4,cystic,,\nc,P3,TR5,\n")
    source = FolderSource(folder)
    by_id = {i.image_id: i for i in source.infos}
    assert [by_id[k].patient_id for k in "abc"] == ["P1", "P2", "P3"]  # was "P1" read as image_id 'a' -> shifted
    assert [by_id[k].tirads for k in "abc"] == ["TR3", "TR4", "TR5"]
    assert by_id["a"].descriptors["composition"] == "solid" and by_id["c"].descriptors["composition"] is None
    assert not [s for s in source.skips if "column" in s.reason]


def test_trailing_comma_in_the_header_and_a_bom(folder: Path) -> None:
    (folder / "labels.csv").write_text("\ufeffImage_ID,patient_id,tirads,\na,P1,TR2,\nb,P1,TR3,\n", encoding="utf-8")
    source = FolderSource(folder)
    assert {i.image_id: (i.patient_id, i.tirads) for i in source.infos} == {
        "a": ("P1", "TR2"), "b": ("P1", "TR3"), "c": ("c", None)}


def test_a_row_with_more_values_than_columns_is_reported_not_shifted(folder: Path) -> None:
    (folder / "labels.csv").write_text("image_id,patient_id,tirads,composition\n"
                                       "a,P1,TR3,mixed cystic, and solid\nb,P2,TR4,cystic\n")
    source = FolderSource(folder)
    assert [i.image_id for i in source.infos] == ["b", "c"]
    reasons = [s.reason for s in source.skips if s.item == "a"]
    assert reasons and "line 2 of labels.csv has 5 values for its 4 columns" in reasons[0]


def test_duplicate_columns_and_undecodable_table_are_named(folder: Path) -> None:
    (folder / "labels.csv").write_text("image_id,tirads,TIRADS\na,TR3,TR4\n")
    with pytest.raises(DataError, match="tirads appear more than once"):
        FolderSource(folder)
    (folder / "labels.csv").write_bytes(b"image_id,tirads\n\xff\xfe,TR3\n")
    with pytest.raises(DataError, match="cannot read label table"):
        FolderSource(folder)
