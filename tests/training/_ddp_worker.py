"""Process body of the two-rank CPU (gloo) smoke run; importable by torch.multiprocessing.spawn children."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def worker(rank: int, world_size: int, port: int, out_dir: str, overrides: list[str]) -> None:
    os.environ.update(
        {"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
         "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    )
    torch.set_num_threads(1)
    import rlar.training.run as run_module
    from rlar.training.config import load_config
    from rlar.training.trainer import Trainer, TrainState
    from tests.training import _tiny

    run_module.open_source = _tiny.open_tiny
    original_fit = Trainer.fit

    def fit_and_dump(self: Trainer) -> TrainState:
        state = original_fit(self)
        torch.save({k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                   Path(out_dir) / f"rank{rank}_weights.pt")
        return state

    Trainer.fit = fit_and_dump  # type: ignore[method-assign]  # patched in this spawned worker process only
    run_module.run_training(load_config(None, overrides), out_dir, progress=False)
