"""Fixtures of the training tests: a tiny source patched in for open_source, and tiny-run config overrides."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # so _tiny imports here and in spawned worker processes

import _tiny  # noqa: E402

# The test machine's cores are shared: one intra-op thread is several times faster than torch's default here.
torch.set_num_threads(1)

# A run that takes seconds: 16 images of 32x32, 2 folds, a narrow compact network, plain weighted sum.
TINY_OVERRIDES = [
    "method=vanilla_mtl",
    "data.image_size=32",
    "data.n_folds=2",
    "data.options={n_cases: 16}",
    "model.deep_dim=4",
    "model.options={compact_channels: [4, 8, 8, 8]}",
    "optim.batch_size=4",
    "optim.warmup_epochs=0",
    "optim.lr=1e-3",
    "training.device=cpu",
    "training.deterministic=false",
    "training.cpu_threads=1",
]


@pytest.fixture
def tiny_source(monkeypatch: pytest.MonkeyPatch) -> type:
    """Route every open_source call (training and CLI) to the tiny synthetic source."""
    import rlar.data.sources
    import rlar.training.run

    monkeypatch.setattr(rlar.training.run, "open_source", _tiny.open_tiny)
    monkeypatch.setattr(rlar.data.sources, "open_source", _tiny.open_tiny)
    return _tiny.TinySource


@pytest.fixture
def tiny_overrides(tmp_path: Path) -> list[str]:
    return [*TINY_OVERRIDES, f"data.cache_dir={tmp_path / 'cache'}"]
