"""The data-facing CLI commands, end to end through ``rlar.cli.main.main``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from rlar.cli.main import main


def _write_folder(root, n=4):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = ["image_id,patient_id,tirads,echogenicity"]
    rng = np.random.default_rng(0)
    for i in range(n):
        img = (rng.random((48, 64)) * 255).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"img{i}.png")
        mask = np.zeros((48, 64), np.uint8)
        mask[10:30, 20:40] = 255
        Image.fromarray(mask).save(root / "masks" / f"img{i}.png")
        rows.append(f"img{i},p{i // 2},TR{i + 1},hypoechoic")
    (root / "images" / "broken.png").write_bytes(b"")  # zero-byte image on disk, not in labels.csv
    (root / "labels.csv").write_text("\n".join(rows) + "\n")


def test_data_summary_counts_and_reports_skips(tmp_path, capsys):
    _write_folder(tmp_path)
    assert main(["data", "summary", "folder", "--root", str(tmp_path), "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "images: 4" in out
    assert "TR1: 1" in out and "TR4: 1" in out
    assert "broken" in out and "zero-byte" in out  # the corrupt file is listed with its reason
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["images"] == 4 and summary["cases"] == 2


def test_missing_root_is_a_clean_error(tmp_path, capsys):
    assert main(["data", "summary", "folder", "--root", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_bad_option_syntax_names_it(tmp_path, capsys):
    assert main(["data", "summary", "phantom", "--option", "n_cases"]) == 2
    assert "key=value" in capsys.readouterr().err


@pytest.mark.ddti
def test_ddti_summary_matches_database_readme(ddti_root, capsys):
    assert main(["data", "summary", "ddti", "--root", str(ddti_root), "--no-verify"]) == 0
    out = capsys.readouterr().out
    assert "cases: 389" in out and "images: 474" in out
    for level, count in {"2": 41, "3": 19, "4a": 96, "4b": 79, "4c": 67, "5": 45, "unknown": 127}.items():
        assert f"{level:>8}: {count}" in out
    assert "142_2: mark names image 142_2.jpg, which is missing" in out


def test_data_summary_lists_groups_merged_by_identical_images(tmp_path, capsys):
    _write_folder(tmp_path)
    # img2 (patient p1) becomes a byte-identical copy of img0 (patient p0): one split group
    (tmp_path / "images" / "img2.png").write_bytes((tmp_path / "images" / "img0.png").read_bytes())
    assert main(["data", "summary", "folder", "--root", str(tmp_path), "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "groups merged by content" in out and "dHash distance <= 16 of 256 bits): 1" in out
    assert "patients p0, p1: identical images img0, img2" in out
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["merged_groups"] == [{"patients": ["p0", "p1"], "images": ["img0", "img1", "img2", "img3"],
                                         "links": ["img0=img2"]}]


def test_data_summary_without_copies_lists_no_merged_group(tmp_path, capsys):
    _write_folder(tmp_path)
    assert main(["data", "summary", "folder", "--root", str(tmp_path)]) == 0
    assert "dHash distance <= 16 of 256 bits): 0" in capsys.readouterr().out
