"""The DDTI model shipped inside the package: present, within budget, loaded without pickle, and it segments."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlar.inference import Predictor
from rlar.inference.shipped import PACKAGED_DIR, is_shipped_dir

pytestmark = pytest.mark.skipif(not is_shipped_dir(PACKAGED_DIR), reason="no model is shipped in this checkout")


def test_the_shipped_model_fits_the_budget_and_names_itself() -> None:
    total = sum(f.stat().st_size for f in PACKAGED_DIR.iterdir() if f.is_file())
    assert total <= 40 * 2**20
    meta = json.loads((PACKAGED_DIR / "model.json").read_text())
    assert meta["model_id"] == "rlar-ddti-guided-lite0-fold0-v1"
    assert not any(f.suffix in (".pt", ".pth", ".pkl") for f in PACKAGED_DIR.iterdir())  # safetensors only


def test_the_shipped_model_segments_a_dark_nodule() -> None:
    predictor = Predictor.from_run(None)
    assert "rlar-ddti-guided-lite0-fold0-v1" in predictor.describe()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:360, :560]
    image = np.clip(0.55 + 0.08 * rng.standard_normal((360, 560)), 0, 1)
    nodule = ((yy - 180) / 70.0) ** 2 + ((xx - 280) / 100.0) ** 2 <= 1
    image[nodule] = np.clip(0.25 + 0.05 * rng.standard_normal(int(nodule.sum())), 0, 1)
    (result,) = predictor.predict((image * 255).astype(np.uint8))
    mask = result.key.mask
    assert mask is not None and mask.shape == (360, 560) and result.nodule_found
    inside = float(mask[nodule].mean())  # the outline lies on the dark ellipse, not elsewhere
    outside = float(mask[~nodule].mean())
    assert inside > 0.5 and outside < 0.1, (inside, outside)
    assert result.class_prob is not None and np.isclose(result.class_prob.sum(), 1.0, atol=1e-3)
