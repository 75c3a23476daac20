"""Tiny or invalid masks never become silent targets (issue 11, item 1): polygons checked, small masks skipped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rlar.data.sources import open_source
from rlar.data.sources.masks import TOO_SMALL, mask_problem, polygon_problem
from rlar.data.summary import summarise_source


def test_mask_problem_thresholds() -> None:
    mask = np.zeros((20, 20), bool)
    assert mask_problem(mask) is None  # empty = "no nodule drawn", handled elsewhere
    mask[3, 4] = True
    assert mask_problem(mask) == f"{TOO_SMALL}: fewer than 16 pixels"
    line = np.zeros((20, 20), bool)
    line[5:7, 0:20] = True  # 40 pixels but 2 rows: a sliver
    assert mask_problem(line) == f"{TOO_SMALL}: under 3 pixels tall or wide"
    square = np.zeros((20, 20), bool)
    square[5:9, 5:9] = True
    assert mask_problem(square) is None
    assert mask_problem(square, min_pixels=17) is not None


@pytest.mark.parametrize(
    ("points", "needle"),
    [
        ([(1, 1), (5, 5)], "2 point(s)"),
        ([(700, 10), (750, 10), (720, 50)], "wholly outside"),
        ([(-50, -40), (-10, -40), (-30, -5)], "wholly outside"),
        ([(10, 10), (20, 20), (30, 30), (40, 40)], "collinear"),
        ([(10, 10), (float("nan"), 20), (30, 5)], "not finite"),
    ],
)
def test_polygon_problem(points: list[tuple[float, float]], needle: str) -> None:
    assert needle in polygon_problem(points, width=560, height=360)  # type: ignore[operator]


def test_polygon_problem_accepts_a_real_polygon_partly_outside() -> None:
    assert polygon_problem([(-5, 10), (40, 10), (40, 50), (-5, 50)], width=560, height=360) is None


def _ddti_case(root: Path, case: str, regions: list[list[tuple[float, float]]]) -> None:
    Image.fromarray(np.full((360, 560, 3), 90, np.uint8)).save(root / f"{case}_1.jpg")
    svg = json.dumps([{"points": [{"x": x, "y": y} for x, y in pts], "regionType": "freehand"} for pts in regions])
    fields = "<composition>solid</composition><calcifications>non</calcifications><tirads>3</tirads>"
    (root / f"{case}.xml").write_text(f"<case><number>{case}</number>{fields}<mark><image>1</image><svg>{svg}</svg></mark></case>")


def test_ddti_polygons_outside_collinear_or_tiny_leave_no_mask(tmp_path: Path) -> None:
    root = tmp_path / "ddti"
    root.mkdir()
    _ddti_case(root, "1", [[(100, 100), (160, 100), (160, 150), (100, 150)]])  # a real nodule
    _ddti_case(root, "2", [[(600, 400), (650, 420), (620, 450)]])  # wholly outside: was clipped to a corner pixel
    _ddti_case(root, "3", [[(100, 100), (120, 120), (140, 140)]])  # collinear: was a diagonal line
    _ddti_case(root, "4", [[(100, 100), (102, 100), (102, 102), (100, 102)]])  # 3x3 pixels: inside, but tiny
    source = open_source("ddti", root, crop=False)
    has_mask = {info.image_id: info.has_mask for info in source.infos}
    assert has_mask == {"1_1": True, "2_1": False, "3_1": False, "4_1": False}
    reasons = {s.item: s.reason for s in source.skips}
    assert "wholly outside" in reasons["2_1"] or any("wholly outside" in s.reason for s in source.skips)
    assert any(s.item == "3_1" and "collinear" in s.reason for s in source.skips)
    assert any(s.item == "4_1" and s.reason.startswith(TOO_SMALL) for s in source.skips)
    assert source.infos[0].descriptors["echogenic_foci"] == "none"  # DDTI "non" through the shared normaliser
    summary = summarise_source(source)
    assert summary.images_with_mask == 1


def test_folder_mask_with_one_stray_pixel_is_a_counted_skip(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name in ("good", "stray"):
        Image.fromarray(np.full((40, 50), 120, np.uint8)).save(tmp_path / "images" / f"{name}.png")
    good = np.zeros((40, 50), np.uint8)
    good[10:25, 12:30] = 255
    stray = np.zeros((40, 50), np.uint8)
    stray[7, 9] = 255
    Image.fromarray(good).save(tmp_path / "masks" / "good.png")
    Image.fromarray(stray).save(tmp_path / "masks" / "stray.png")
    source = open_source("folder", tmp_path)
    stray_index = [i.image_id for i in source.infos].index("stray")
    sample = source[stray_index]
    assert sample.mask is None and sample.extras["mask_dropped"].startswith(TOO_SMALL)
    assert [s.item for s in source.skips if s.reason.startswith(TOO_SMALL)] == ["stray"]
    source[stray_index]  # decoding again does not record it twice
    source.verify(progress=False)
    summary = summarise_source(source)
    assert summary.images == 2 and summary.images_with_mask == 1
    assert sum(s.reason.startswith(TOO_SMALL) for s in summary.skips) == 1


def test_polygon_problem_refuses_a_corrupt_far_point_and_keeps_a_bow_tie() -> None:
    far = polygon_problem([(100, 100), (1e308, 5), (120, 150)], width=560, height=360)
    assert far is not None and "point 2 (1e+308, 5) lies more than one image size outside" in far
    assert "outside" in str(polygon_problem([(100, 100), (120, -1e308), (130, 150)], width=560, height=360))
    bow_tie = [(100, 100), (160, 160), (160, 100), (100, 160)]  # shoelace area 0: its two lobes cancel
    assert polygon_problem(bow_tie, width=560, height=360) is None
    border = polygon_problem([(0, 0), (0, 50), (-10, 30)], width=560, height=360)
    assert border is not None and "image border" in border


def test_ddti_far_point_gives_no_wedge_mask_and_a_bow_tie_keeps_its_mask(tmp_path: Path) -> None:
    root = tmp_path / "ddti"
    root.mkdir()
    _ddti_case(root, "1", [[(100, 100), (160, 100), (1e308, 120), (160, 150), (100, 150)]])
    _ddti_case(root, "2", [[(100, 100), (160, 160), (160, 100), (100, 160)]])
    source = open_source("ddti", root, crop=False)
    has_mask = {info.image_id: info.has_mask for info in source.infos}
    assert has_mask == {"1_1": False, "2_1": True}  # 1_1 was a wedge over half the image; 2_1 was "collinear"
    reasons = [s.reason for s in source.skips if s.item == "1_1"]
    assert any("more than one image size outside the 560x360 image" in r and "region dropped" in r for r in reasons)
    assert not [s for s in source.skips if s.item == "2_1"]
    mask = source[[i.image_id for i in source.infos].index("2_1")].mask
    assert mask is not None and mask[110, 105] and mask[110, 155] and not mask[100:160, 128:133].all()
