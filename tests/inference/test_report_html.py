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
