"""Fixtures of the training tests: a tiny source patched in for open_source, and tiny-run config overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.training import _tiny

# The test machine's cores are shared: one intra-op thread is several times faster than torch's default here.
torch.set_num_threads(1)

# A run that takes seconds (the overrides live in _tiny, importable from every test module without name clashes).
TINY_OVERRIDES = _tiny.TINY_OVERRIDES


@pytest.fixture
def tiny_source(monkeypatch: pytest.MonkeyPatch) -> type:
    """Route every open_source call (training and CLI) to the tiny synthetic source."""
    import rlar.cli.common  # noqa: F401  imported before patching, so its own `open_source` stays the real one
    import rlar.data.sources
    import rlar.training.run

    monkeypatch.setattr(rlar.training.run, "open_source", _tiny.open_tiny)
    monkeypatch.setattr(rlar.data.sources, "open_source", _tiny.open_tiny)
    return _tiny.TinySource


@pytest.fixture
def tiny_overrides(tmp_path: Path) -> list[str]:
    return [*TINY_OVERRIDES, f"data.cache_dir={tmp_path / 'cache'}"]
