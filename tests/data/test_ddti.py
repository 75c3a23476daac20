"""DDTI adapter: a synthetic folder in DDTI's native layout with every oddity, and the real development copy."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rlar.data.record import DESCRIPTOR_VALUES
from rlar.data.sources import open_source
from rlar.data.sources.ddti import DDTI_DESCRIPTOR_MAP, DDTISource, rasterise

H, W = 90, 140  # synthetic image size (DDTI's are 560x360; small keeps the test fast)


def _case_xml(number: str, marks: list[tuple[str, str]], **fields: str) -> str:
    tags = ["age", "sex", "composition", "echogenicity", "margins", "calcifications", "tirads"]
    tags += ["reportbacaf", "reporteco"]
    head = "".join(f"<{t}>{fields.get(t, '')}</{t}>" for t in tags)
    body = "".join(f"<mark><image>{k}</image><svg>{svg}</svg></mark>" for k, svg in marks)
    return f"<case><number>{number}</number>{head}{body}</case>"


def _region(points: list[tuple[int, int]]) -> dict:
    return {"points": [{"x": x, "y": y} for x, y in points], "annotation": {}, "regionType": "freehand"}


def _square(x0: int, y0: int, x1: int, y1: int) -> dict:
    return _region([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])


def _jpg(path: Path, seed: int) -> None:
    """A dark frame with a speckled 'scan area' in the middle and a bright text glyph in the margin."""
    rng = np.random.default_rng(seed)
    array = np.zeros((H, W, 3), dtype=np.uint8)
    array[8:80, 25:120] = rng.integers(40, 160, (72, 95, 1), dtype=np.uint8)
    array[10:15, 3:7] = 255
    Image.fromarray(array).save(path, quality=95)


@pytest.fixture()
def ddti_tiny(tmp_path: Path) -> Path:
    root = tmp_path / "ddti"
    root.mkdir()
    two_regions = json.dumps([_square(30, 20, 50, 40), _square(80, 30, 100, 60)])
    (root / "1.xml").write_text(
        _case_xml(
            "1",
            [("1", two_regions), ("2", "[]")],
            composition="predominantly solid",
            echogenicity="xyz",
            margins="ill- defined",
            calcifications="microcalcification",
            tirads="4a",
        )
    )
    two_points = json.dumps([_region([(10, 10), (20, 20)]), _region([(60, 40), (200, 40), (200, 85), (60, 85)])])
    (root / "2.xml").write_text(
        _case_xml(
            "2",
            [("1", json.dumps([_square(40, 20, 60, 50)])), ("2", json.dumps([_square(1, 1, 5, 5)])), ("3", two_points)],
            composition="dense",
            echogenicity="marked hypoechogenicity",
            margins="well defined smooth",
            calcifications="non",
            tirads="",
        )
    )
    (root / "3.xml").write_text("<case><number>3</number><mark><image>1</image>")  # truncated XML
    (root / "5.xml").write_text(_case_xml("5", [("1", '[{"points": [{"x": 1, ')], tirads="7"))
    for name, seed in [("1_1", 1), ("1_2", 2), ("2_1", 3), ("2_3", 4), ("3_1", 5), ("4_1", 6), ("5_1", 7), ("1_9", 8)]:
        _jpg(root / f"{name}.jpg", seed)
    return root


def _reasons(source: DDTISource) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for skip in source.skips:
        out.setdefault(skip.item, []).append(skip.reason)
    return out


def test_descriptor_map_targets_canonical_vocabulary() -> None:
    for tag, key, mapping in DDTI_DESCRIPTOR_MAP:
        assert key in DESCRIPTOR_VALUES, f"{tag} maps to unknown descriptor key {key}"
        assert set(mapping.values()) <= set(DESCRIPTOR_VALUES[key]), f"{tag} maps outside the {key} vocabulary"


def test_tiny_scan_counts_and_labels(ddti_tiny: Path) -> None:
    source = DDTISource(ddti_tiny, crop=False)
    assert source.case_count == 3  # 1, 2, 5 parse; 3.xml is malformed
    by_id = {info.image_id: info for info in source.infos}
    assert sorted(by_id) == ["1_1", "1_2", "2_1", "2_3", "5_1"]
    one = by_id["1_1"]
    assert one.patient_id == "ddti-1" and one.tirads == "4a" and one.scale == "ddti" and one.source == "ddti"
    assert one.descriptors == {
        "composition": "mixed_solid",
        "echogenicity": None,  # unknown raw value 'xyz': recorded, not guessed
        "shape": None,
        "margin": "ill_defined",
        "echogenic_foci": "punctate",
    }
    assert by_id["1_2"].descriptors == one.descriptors and by_id["1_2"].tirads == "4a"  # labels are per case
    two = by_id["2_1"]
    assert two.tirads is None
    assert two.descriptors["composition"] == "solid" and two.descriptors["echogenicity"] == "very_hypoechoic"
    assert two.descriptors["margin"] == "smooth" and two.descriptors["echogenic_foci"] == "none"
    assert by_id["5_1"].tirads is None  # '7' is not on the DDTI scale
    assert [by_id[i].has_mask for i in ["1_1", "1_2", "2_1", "2_3", "5_1"]] == [True, False, True, True, False]


def test_tiny_skips_name_item_and_reason(ddti_tiny: Path) -> None:
    reasons = _reasons(DDTISource(ddti_tiny, crop=False))
    assert any("unknown echogenicity value 'xyz'" in r for r in reasons["case 1"])
    assert any("mark has no region" in r for r in reasons["1_2"])
    assert any("2_2.jpg, which is missing" in r for r in reasons["2_2"])
    assert any("does not parse" in r for r in reasons["3.xml"])
    assert any("could not be used" in r for r in reasons["3_1.jpg"])
    assert any("no case file 4.xml" in r for r in reasons["4_1.jpg"])
    assert reasons["1_9.jpg"] == ["image with no annotation entry"]
    assert any("2 point(s)" in r for r in reasons["2_3"])
    assert any("outside the 140x90 image; clipped" in r for r in reasons["2_3"])
    assert any("JSON does not parse" in r for r in reasons["5_1"])
    assert any("unknown tirads value '7'" in r for r in reasons["case 5"])
    assert "1_1" not in reasons and "2_1" not in reasons  # clean items are not reported


def test_tiny_masks_union_and_clipping(ddti_tiny: Path) -> None:
    source = DDTISource(ddti_tiny, crop=False)
    samples = {s.image_id: s for s in source}
    first = samples["1_1"]
    assert first.mask is not None
    assert first.image.shape == first.mask.shape == (H, W) and first.image.dtype == np.float32
    assert first.extras["n_regions"] == 2 and first.extras["crop_box"] is None
    # Both regions filled: one pixel inside each square, none between them.
    assert first.mask[30, 40] and first.mask[45, 90] and not first.mask[30, 65]
    left_square = rasterise((((30, 20), (50, 20), (50, 40), (30, 40)),), (H, W))
    right_square = rasterise((((80, 30), (100, 30), (100, 60), (80, 60)),), (H, W))
    np.testing.assert_array_equal(first.mask, left_square | right_square)
    assert samples["1_2"].mask is None
    clipped = samples["2_3"].mask
    assert clipped is not None
    assert samples["2_3"].extras["n_regions"] == 1  # the 2-point region was dropped
    assert clipped[50, W - 2] and clipped[84, 100] and clipped.sum() > 0.9 * 45 * 80  # clipped, not dropped


def test_tiny_crop_keeps_mask(ddti_tiny: Path) -> None:
    plain = {s.image_id: s for s in DDTISource(ddti_tiny, crop=False)}
    cropped = {s.image_id: s for s in open_source("ddti", ddti_tiny)}
    for image_id, sample in cropped.items():
        top, bottom, left, right = sample.extras["crop_box"]
        assert sample.image.shape == (bottom - top, right - left)
        np.testing.assert_array_equal(sample.image, plain[image_id].image[top:bottom, left:right])
        assert left > 7, "the bright glyph in the left margin must be cropped away"
        if sample.mask is not None:
            assert sample.mask.shape == sample.image.shape
            assert sample.extras["mask_pixels_cropped"] == 0
            plain_mask = plain[image_id].mask
            assert plain_mask is not None and sample.mask.sum() == plain_mask.sum()
    # 2_3's clipped region reaches the right border, beyond the scan area: the box grows to keep it.
    assert cropped["2_3"].extras["mask_pixels_outside_scan_area"] > 0
    assert cropped["2_3"].extras["crop_box"][3] == W


def test_scan_does_not_decode_pixels(ddti_tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rlar.data.sources.ddti as ddti_module

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("pixels decoded during scan")

    monkeypatch.setattr(ddti_module, "read_image", forbidden)
    source = DDTISource(ddti_tiny)
    assert len(source) == 5
    with pytest.raises(AssertionError, match="pixels decoded"):
        source[0]


# ------------------------------------------------------------------------------------ real DDTI copy
@pytest.mark.ddti
def test_real_ddti_counts(ddti_root: Path) -> None:
    source = DDTISource(ddti_root)
    assert source.case_count == 389
    assert len(source) == 474
    assert len({i.patient_id for i in source.infos}) == 389
    levels = Counter(info.tirads or "" for info in source.infos)
    assert levels == {"2": 41, "3": 19, "4a": 96, "4b": 79, "4c": 67, "5": 45, "": 127}
    labelled = [info for info in source.infos if info.tirads is not None]
    assert len(labelled) == 347 and len({i.patient_id for i in labelled}) == 297
    assert sum(info.has_mask for info in source.infos) == 470  # 4 marks have an empty region list
    reasons = _reasons(source)
    assert sorted(reasons) == ["120_1", "142_2", "233_1", "389_1", "62_3"]
    assert "missing" in reasons["142_2"][0]
    assert all(info.descriptors["shape"] is None for info in source.infos)


@pytest.mark.ddti
def test_real_ddti_samples_load_cropped(ddti_root: Path) -> None:
    source = DDTISource(ddti_root)
    index = {info.image_id: i for i, info in enumerate(source.infos)}
    # Single- and multi-region marks, an empty mark, and two images with a reader's TI-RADS note burned in
    # under the scan (350_1: "TIRADS 4A (4B*)", 389_1: "TIRADS 6: CA PAPILAR") that the crop must remove.
    for image_id in ["1_1", "100_1", "146_1", "62_3", "350_1", "389_1"]:
        sample = source[index[image_id]]
        top, bottom, left, right = sample.extras["crop_box"]
        assert sample.extras["original_shape"] == (360, 560)
        assert sample.image.shape == (bottom - top, right - left)
        assert left >= 30, "the left margin (grey-scale bar, depth dots) must be cropped"
        assert sample.image.min() >= 0.0 and sample.image.max() <= 1.0
        if sample.mask is not None:
            assert sample.mask.shape == sample.image.shape and sample.mask.any()
            assert sample.extras["mask_pixels_cropped"] == 0
            full = rasterise(sample.info.location.regions, (360, 560))
            assert int(sample.mask.sum()) == int(full.sum())
        else:
            assert image_id in {"62_3", "389_1"}  # marks with an empty region list
    for image_id in ["350_1", "389_1"]:
        assert source[index[image_id]].extras["crop_box"][1] <= 320  # note rows (~330-345) are cut
