"""The JSON report and the self-contained HTML page say the same thing, with the research-use notice."""

from __future__ import annotations

import json
import re

import numpy as np

from rlar.inference.html import render_report_html
from rlar.inference.outputs import overlay, png_bytes, safe_stem
from rlar.inference.predictor import Predictor
from rlar.inference.report import RESEARCH_NOTICE, build_report, csv_row


def _image() -> np.ndarray:
    image = np.full((80, 120), 0.3, dtype=np.float32)
    image[20:50, 30:90] = 0.9
    return image


def test_report_is_strict_json_with_provenance(oracle_predictor: Predictor) -> None:
    result, = oracle_predictor.predict(_image())
    report = build_report(result, oracle_predictor, {"command": "test"}, {"json": "x.json"})
    text = json.dumps(report, allow_nan=False)  # no NaN/inf anywhere
    back = json.loads(text)
    assert back["notice"] == RESEARCH_NOTICE and back["category"] == result.category
    assert set(back["class_probabilities"]) == set(result.class_names)
    provenance = back["provenance"]
    assert provenance["rlar_version"] and len(provenance["models"][0]["sha256"]) == 64
    assert provenance["arguments"] == {"command": "test"} and provenance["config"]["method"] == "guided_mtl"
    assert back["geometry"]["crop_box"] == {"top": 0, "bottom": 80, "left": 0, "right": 120}
    row = csv_row(back)
    assert row["category"] == result.category and row["width"] == back["measurements"]["width"]


def test_html_is_self_contained_and_escapes_names(oracle_predictor: Predictor) -> None:
    image = _image()
    result, = oracle_predictor.predict(image)
    report = build_report(result, oracle_predictor)
    report["image"] = "<script>alert(1)</script>.png"
    page = render_report_html(report, png_bytes(overlay(image, result.key.mask)))
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert RESEARCH_NOTICE in page and "data:image/png;base64," in page
    assert not re.search(r"(src|href)=['\"]https?://", page)  # nothing fetched from the network
    assert f">{result.category}<" in page and "id='evidence'" in page


def test_overlay_draws_the_contour_at_full_resolution() -> None:
    image = _image()
    mask = image > 0.5
    picture = overlay(image, mask, truth=np.roll(mask, 5, axis=1))
    assert picture.shape == (80, 120, 3) and picture.dtype == np.uint8
    yellow = np.all(picture == (255, 215, 0), axis=-1)
    assert yellow[20, 30:90].all() and not yellow[35, 60]  # on the boundary, not inside
    assert np.all(picture == (0, 200, 255), axis=-1).any()  # the reference contour too


def test_safe_stem_never_leaves_the_folder() -> None:
    assert "/" not in safe_stem("../../etc/passwd") and not safe_stem("../x").startswith(".")


def test_a_tie_is_called_a_tie_and_the_predicted_class_is_highlighted(oracle_predictor: Predictor) -> None:
    """Issue 21 item 5: 0.238 vs 0.236 is not a bold category."""
    from rlar.inference.report import TIE_MARGIN

    result, = oracle_predictor.predict(_image())
    report = build_report(result, oracle_predictor)
    assert not report["tie"] and report["confidence"]["top_two_margin"] >= TIE_MARGIN
    page = render_report_html(report, None)
    assert f"<tr class='predicted'><td>{result.category}</td>" in page and "How sure: top-two margin" in page
    assert "docs/model-card.md" in page
    names = result.class_names
    result.class_prob = np.array([0.238, 0.236, 0.2, 0.2, 0.126])[: len(names)]
    tied = build_report(result, oracle_predictor)
    assert tied["tie"] and tied["statement"].startswith(f"Tie between TI-RADS categories {names[0]} and {names[1]}")
    assert any(flag.startswith("tie:") for flag in tied["confidence"]["flags"])
    page = render_report_html(tied, None)
    assert page.count("<tr class='tied'>") == 2 and "<tr class='predicted'>" not in page
    assert f"class='category tied' id='category'>{names[0]}</span>" in page and f"tied with {names[1]}" in page


def test_evidence_beyond_the_training_range_and_a_huge_mask_are_flagged(oracle_predictor: Predictor) -> None:
    import dataclasses

    image = np.full((80, 120), 0.9, dtype=np.float32)
    image[:6] = 0.1  # the oracle segments almost everything
    result, = oracle_predictor.predict(image)
    assert result.evidence or result.evidence_note
    if result.evidence:
        result.evidence[0] = dataclasses.replace(result.evidence[0], z_score=64.0)
    flags = build_report(result, oracle_predictor)["confidence"]["flags"]
    assert any("of the scan area" in f for f in flags)
    if result.evidence:
        assert any(f.startswith("evidence beyond the training range: " + result.evidence[0].name) for f in flags)


def test_two_pane_images_are_measured_per_region(oracle_predictor: Predictor) -> None:
    image = np.full((80, 200), 0.3, dtype=np.float32)
    image[20:50, 20:60] = 0.9  # left view: 40 x 30
    image[25:45, 130:150] = 0.9  # right view: 20 x 20
    result, = oracle_predictor.predict(image)
    m = result.measurements
    assert m is not None and len(m.regions) == 2
    widths = sorted(round(r["width"]) for r in m.regions)
    assert abs(widths[0] - 20) <= 3 and abs(widths[1] - 40) <= 3
    assert m.width == max(r["width"] for r in m.regions)  # the headline is the largest region, not the union
    report = build_report(result, oracle_predictor)
    assert len(report["measurements"]["regions"]) == 2
    assert any("separate regions" in f for f in report["confidence"]["flags"])
