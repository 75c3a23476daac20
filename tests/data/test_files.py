"""Listing input folders (issue 23): dangling links, link loops and FIFOs are reported with a reason, names that
are not UTF-8 never end in a traceback; the write probe lives in the data layer."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rlar.data.files import display_name, is_utf8_name, list_folder, probe_folder
from rlar.data.sources import open_source
from rlar.data.sources.folder import FolderSource
from rlar.data.summary import summarise_source
from rlar.errors import ConfigError

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX links, FIFOs and byte file names")

LATIN1 = os.fsdecode(b"caf\xe9")  # a Latin-1 file name: not UTF-8, decoded by Python with a surrogate escape


def _png(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((30, 40), value, np.uint8)).save(path)
    return path


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    images = tmp_path / "data" / "images"
    _png(images / "good.png", 100)
    _png(images / f"{LATIN1}.png", 140)
    (images / "dangling.png").symlink_to(images / "nowhere.png")
    (images / "loop1.png").symlink_to("loop2.png")
    (images / "loop2.png").symlink_to("loop1.png")
    os.mkfifo(images / "pipe.png")
    (images / "linked.png").symlink_to(images / "good.png")
    (images / ".DS_Store").write_bytes(b"x")
    (images / "sub").mkdir()
    (images / "sub" / "back").symlink_to(images)
    return tmp_path / "data"


def test_list_folder_reports_what_it_cannot_use(messy: Path) -> None:
    found = list_folder(messy / "images")
    assert [p.name for p in found.files] == sorted(["good.png", f"{LATIN1}.png", "linked.png"])
    reasons = {p.name: r for p, r in found.unusable}
    assert reasons["dangling.png"].startswith("dangling symbolic link")
    assert "loop" in reasons["loop1.png"] and "loop" in reasons["loop2.png"]
    assert "named pipe (FIFO)" in reasons["pipe.png"]
    assert found.hidden == 1 and [p.name for p in found.folders] == ["sub"]
    walked = list_folder(messy / "images", recursive=True)
    assert any(p.name == "back" and "reached again" in r for p, r in walked.unusable)  # no endless walk


def test_display_names_of_non_utf8_file_names() -> None:
    assert not is_utf8_name(LATIN1) and is_utf8_name("café")
    assert display_name(f"{LATIN1}.png") == "caf\\xe9.png"
    display_name(f"{LATIN1}.png").encode("ascii")  # printable anywhere


def test_folder_source_counts_links_loops_and_pipes_and_keeps_odd_names(messy: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    source = open_source("folder", messy)
    assert isinstance(source, FolderSource)
    assert sorted(i.image_id for i in source.infos) == ["caf\\xe9", "good", "linked"]
    reasons = " | ".join(f"{s.item}: {s.reason}" for s in source.skips)
    assert "dangling.png: dangling symbolic link" in reasons
    assert "2 items" in reasons and "symbolic link loop" in reasons
    assert "pipe.png: not a regular file but a named pipe" in reasons
    assert any("not valid UTF-8" in note and "caf\\xe9.png" in note for note in source.notes)
    source.verify(progress=False)  # decodes the odd-named file by its real path
    assert len(source.infos) == 3
    summary = summarise_source(source)
    assert summary.images == 3 and len(summary.skips) == 3
    # Printing the summary to a strict ASCII terminal does not fail on the odd name.
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="strict")
    print(*(f"{s.item}: {s.reason}" for s in source.skips), *source.notes, sep="\n", file=out)
    out.flush()


def test_ddti_counts_a_dangling_image_link(tmp_path: Path) -> None:
    root = tmp_path / "ddti"
    root.mkdir()
    (root / "1_1.jpg").symlink_to(root / "gone.jpg")
    (root / "1.xml").write_text("<case><number>1</number><tirads>3</tirads><mark><image>1</image><svg>[]</svg>"
                                "</mark></case>")
    source = open_source("ddti", root)
    reasons = {s.item: s.reason for s in source.skips}
    assert reasons["1_1.jpg"].startswith("dangling symbolic link")
    assert "which is missing" in reasons["1_1"]


def test_probe_folder_lives_in_the_data_layer_and_cli_re_exports_it(tmp_path: Path) -> None:
    from rlar.cli import common

    assert common.probe_folder is probe_folder
    assert probe_folder(tmp_path / "new" / "out", "--out").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="--out"):
        probe_folder(tmp_path / "file" / "out", "--out")


def test_thyroidxl_counts_a_fifo_among_its_images(tmp_path: Path) -> None:
    root = tmp_path / "xl"
    _png(root / "train" / "images" / "1.png", 90)
    os.mkfifo(root / "train" / "images" / "2.png")
    source = open_source("thyroidxl", root)
    assert [i.image_id for i in source.infos] == ["1"]
    assert any(s.item.endswith("2.png") and "named pipe" in s.reason for s in source.skips)
