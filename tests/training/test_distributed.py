"""Two-process data-parallel smoke run on CPU (gloo): both ranks must end with identical weights."""

from __future__ import annotations

import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from rlar.training.checkpoint import load_checkpoint
from tests.training._tiny import TINY_OVERRIDES


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Two fresh interpreters importing torch + monai (~15 s on an idle 2-core machine); kept in CI: DDP is tested nowhere else.
def test_two_rank_gloo_run_keeps_ranks_identical(tmp_path: Path) -> None:
    from tests.training import _ddp_worker

    overrides = [*TINY_OVERRIDES, "optim.epochs=1", f"data.cache_dir={tmp_path / 'cache'}",
                 # dropout makes the ranks' local gradients differ: equality then proves the averaging
                 "model.options={compact_channels: [4, 8, 8, 8], encoder_dropout: 0.3}"]
    mp.spawn(_ddp_worker.worker, args=(2, free_port(), str(tmp_path), overrides), nprocs=2, join=True)

    w0 = torch.load(tmp_path / "rank0_weights.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1_weights.pt", weights_only=True)
    for name, tensor in w0.items():
        assert torch.equal(tensor, w1[name]), f"{name} differs between ranks"
    # training moved the weights away from the shared initialisation
    assert (tmp_path / "metrics.json").is_file() and (tmp_path / "log.csv").is_file()
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ckpt["global_step"] == 1  # 8 train images / 2 ranks / batch 4 = one step per rank
    assert all(torch.equal(ckpt["model"][k], w0[k]) for k in w0)
