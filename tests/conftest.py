"""Shared fixtures. The DDTI development copy is optional: tests that need it skip when it is absent.

``tests`` is a package (every folder has an ``__init__.py``), so helpers are imported by their package name
(``from tests.training import _tiny``); pytest puts the repository root on ``sys.path`` (``pythonpath`` in
pyproject.toml), as spawned worker processes inherit it.
"""

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


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of the session's small phantom-trained model (tests/inference/_rlar_trained_model.py),
    trained on first use and shared by the inference, serving, CLI, evaluation, reporting and radiomics tests."""
    from tests.inference import _rlar_trained_model

    return _rlar_trained_model.train(tmp_path_factory)
