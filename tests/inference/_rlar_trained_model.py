"""One small model trained with the public API, once per session (the ``trained_run`` fixture of tests/conftest.py).

Trained on the synthetic phantom with radiomics guidance (guided_mtl, so the checkpoint has a standardiser and
h_tirads is supervised): 40 cases at 64x64, 2 epochs, a narrow compact network -- about 15-25 s on 2 busy cores.
The model is not good (that needs minutes); these tests check the pipeline around it, and the deterministic
"oracle" network in conftest.py checks geometry and measurements exactly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

OVERRIDES = [
    "method=guided_mtl",
    "data.source=phantom",
    "data.options={n_cases: 40, image_size: [64, 64]}",
    "data.image_size=64",
    "data.n_folds=3",
    "model.deep_dim=4",
    "model.options={compact_channels: [4, 8, 8, 8]}",
    "optim.batch_size=8",
    "optim.warmup_epochs=0",
    "optim.lr=3e-3",
    "optim.epochs=2",
    "training.device=cpu",
    "training.deterministic=false",
    "training.cpu_threads=1",
]

def train(factory: pytest.TempPathFactory) -> Path:
    """Train the model in a new temporary folder and return its run folder. Tests take the session fixture
    ``trained_run`` of tests/conftest.py, which calls this once per session."""
    from rlar.training.config import load_config
    from rlar.training.run import run_training

    torch.set_num_threads(1)
    base = factory.mktemp("rlar_trained_model")
    cfg = load_config(None, [*OVERRIDES, f"data.cache_dir={base / 'cache'}"])
    run_training(cfg, base / "run", progress=False)
    return base / "run"


def phantom_png(folder: Path, index: int = 0, size: tuple[int, int] = (64, 64)) -> Path:
    """A phantom image written as an 8-bit PNG (a 'new' image for prediction)."""
    import numpy as np
    from PIL import Image

    from rlar.data.sources import open_source

    source = open_source("phantom", None, n_cases=index + 1, image_size=list(size), seed=7)
    image = source[index].image
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"phantom_{index}.png"
    Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).save(path)
    return path
