"""Shared fixtures. The DDTI development copy is optional: tests that need it skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DDTI_ROOT = Path(os.environ.get("RLAR_DDTI_ROOT", REPO_ROOT.parent / "shared" / "data" / "ddti"))


@pytest.fixture(scope="session")
def ddti_root() -> Path:
    if not (DDTI_ROOT / "1.xml").is_file():
        pytest.skip(f"DDTI development copy not found at {DDTI_ROOT} (set RLAR_DDTI_ROOT)")
    return DDTI_ROOT
