"""A tiny synthetic source for the training tests: bright disks on speckle, label = disk size (ACR scale).

Used where the real phantom source would make the tests slower; it implements the Source interface exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rlar.data.record import SampleInfo
from rlar.data.sources.base import Source

LEVELS = ("TR1", "TR2", "TR3", "TR4", "TR5")

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


class TinySource(Source):
    name = "tiny"
    needs_root = False
    scale = "acr"

    def __init__(self, root: str | Path | None = None, n_cases: int = 16, size: int = 32,
                 images_per_case: int = 1) -> None:
        self.n_cases, self.size, self.images_per_case = n_cases, size, images_per_case
        super().__init__(root)

    def _scan(self) -> Iterator[SampleInfo]:
        for case in range(self.n_cases):
            for k in range(self.images_per_case):
                yield SampleInfo(
                    image_id=f"c{case}_{k}", patient_id=f"p{case}", source=self.name,
                    tirads=LEVELS[case % len(LEVELS)], scale="acr", has_mask=True, location=(case, k),
                )

    def _load(self, info: SampleInfo) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
        case, k = info.location
        rng = np.random.default_rng(1000 * case + k)
        yy, xx = np.mgrid[: self.size, : self.size]
        radius = self.size * (0.12 + 0.05 * (case % len(LEVELS)))
        cy, cx = self.size / 2 + rng.uniform(-3, 3, size=2)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        image = 0.3 + 0.1 * rng.random((self.size, self.size)) + 0.4 * mask
        return np.clip(image, 0, 1).astype(np.float32), mask, {}


def open_tiny(name: str, root: str | Path | None = None, **options: Any) -> TinySource:
    """Stand-in for rlar.data.sources.open_source used by monkeypatching (any name gives the tiny source)."""
    return TinySource(root, **options)


def poison_loss(monkeypatch: pytest.MonkeyPatch,
                transform: Callable[[dict[str, torch.Tensor], int], dict[str, torch.Tensor]]) -> None:
    """Make training's loss pass through ``transform(losses, step)`` on every step with gradients on (step 1, 2, ...),
    by wrapping ``rlar.training.run.build_components``: how the guard tests make a run diverge on cue. Turn the
    competition probe off in those runs (it also calls the loss with gradients on)."""
    import torch

    import rlar.training.run as run_module

    build = run_module.build_components
    state = {"step": 0}

    def wrapped(*args, **kwargs):  # noqa: ANN202
        model, strategy, loss_fn = build(*args, **kwargs)

        def loss(out, batch):  # noqa: ANN202
            losses = loss_fn(out, batch)
            if torch.is_grad_enabled():
                state["step"] += 1
                losses = transform(losses, state["step"])
            return losses

        return model, strategy, loss

    monkeypatch.setattr(run_module, "build_components", wrapped)
