"""docs/reliability.md names, for every guard, the test that checks it: each named test must exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NAMED_TEST = re.compile(r"`([\w/]+\.py)::(test_\w+)`")


def test_every_test_named_in_the_reliability_table_exists() -> None:
    text = (REPO / "docs" / "reliability.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| area")]
    assert len(rows) >= 20
    missing = []
    for row in rows:
        named = NAMED_TEST.findall(row)
        if not named and "---" not in row:
            missing.append(f"no test named in: {row[:80]}")
        for path, name in named:
            file = REPO / "tests" / path
            if not file.is_file() or not re.search(rf"^def {name}\(", file.read_text(), re.MULTILINE):
                missing.append(f"{path}::{name}")
    assert not missing, missing
