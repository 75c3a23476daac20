"""``rlar data summary`` counts too-small masks among the skips (issue 11, 'done means')."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rlar.cli.main import main


def test_summary_counts_too_small_masks_by_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray((rng.random((60, 80)) * 255).astype(np.uint8)).save(tmp_path / "images" / f"img{i}.png")
        mask = np.zeros((60, 80), np.uint8)
        if i < 2:
            mask[15:40, 20:50] = 255
        else:
            mask[5, 5 + i] = 255  # one stray pixel
        Image.fromarray(mask).save(tmp_path / "masks" / f"img{i}.png")
    assert main(["data", "summary", "folder", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "images: 4  (with mask: 2," in out
    assert "img2: mask too small: fewer than 16 pixels; image kept without mask" in out
    assert "skipped or incomplete items: 2" in out
    assert sum("mask too small" in line for line in out.splitlines()) == 2
