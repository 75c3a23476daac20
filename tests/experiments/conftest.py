"""A tiny phantom grid file shared by the experiment tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

#: Small and fast: 16 phantom cases at 32 px, 2 folds, 1 epoch, one thread.
TINY_OVERRIDES = [
    "data.options.n_cases=16", "data.options.image_size=[32, 32]", "data.image_size=[32, 32]", "data.n_folds=2",
    "optim.epochs=1", "optim.batch_size=8", "training.cpu_threads=1", "model.options.compact_channels=[4, 8, 8, 8]",
]


@pytest.fixture
def tiny_grid(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_grid.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tiny", "base": "phantom:cpu", "methods": ["vanilla_mtl", "rlar"], "folds": "all", "seeds": [0, 1],
        "overrides": [*TINY_OVERRIDES, f"data.cache_dir={tmp_path / 'cache'}"],
    }))
    return path
