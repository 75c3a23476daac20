"""predict's input listing: entries it cannot use are reported with a reason, names that are not UTF-8 print."""

from __future__ import annotations

import os
from pathlib import Path

from rlar.inference.batch import expand_inputs


def test_dangling_links_loops_and_fifos_are_reported_not_lost(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (folder / "gone.png").symlink_to(folder / "missing.png")
    (folder / "loop").symlink_to(folder / "loop")
    os.mkfifo(folder / "pipe.png")
    found = expand_inputs([folder])
    assert [stem for _, stem in found.files] == ["a"]
    reasons = dict(found.unusable)
    assert len(reasons) == 3 and any("dangling" in r for r in reasons.values())
    assert any("FIFO" in r for r in reasons.values()) and any("loop" in r for r in reasons.values())


def test_a_name_that_is_not_utf8_becomes_printable_text(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    raw = os.fsencode(folder) + b"/caf\xe9.png"
    with open(raw, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n")
    found = expand_inputs([folder])
    (file, stem), = found.files
    assert stem == "caf_xe9" and stem.encode("utf-8")  # printable (safe_stem); the file keeps its real path
    assert file.exists()
