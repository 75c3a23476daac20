"""Fixtures of the viewer tests: the session's trained model (shared with tests/inference)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "inference"))

import _rlar_trained_model  # noqa: E402


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _rlar_trained_model.trained_run(tmp_path_factory)
