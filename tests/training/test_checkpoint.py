"""Checkpoints: atomic writes, weights_only loading of every stored item, clear errors for foreign files."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

import rlar.training.checkpoint as ck
from rlar.errors import DataError
from rlar.training.checkpoint import load_checkpoint, save_checkpoint
from rlar.training.seeding import get_rng_state, make_generator, set_rng_state


def full_state() -> dict:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    return {
        "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        "strategy": {}, "rng": get_rng_state(make_generator(3)), "epoch": 2, "global_step": 8,
        "best_score": 0.5, "config": {"optim": {"lr": 0.1, "image_size": [32, 32]}},
        "standardiser": {"columns": ["a"], "mean": [0.1], "std": [1.0]}, "history": [{"epoch": 1, "total": 1.0}],
    }


def test_everything_stored_loads_with_weights_only(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.pt", full_state())
    raw = torch.load(path, weights_only=True)  # would raise on any pickled numpy/python object
    assert raw["format"] == ck.CHECKPOINT_FORMAT and raw["epoch"] == 2
    state = load_checkpoint(path)
    assert state["standardiser"]["mean"] == [0.1]
    assert torch.equal(state["model"]["weight"], raw["model"]["weight"])


def test_rng_state_roundtrip_through_checkpoint(tmp_path: Path) -> None:
    gen = make_generator(7)
    torch.randperm(5, generator=gen)
    save_checkpoint(tmp_path / "c.pt", {"model": {}, "config": {}, "epoch": 0, "rng": get_rng_state(gen)})
    expected = (random.random(), np.random.rand(), torch.rand(1).item(), torch.randperm(9, generator=gen).tolist())
    for _ in range(3):  # move every RNG on
        random.random(), np.random.rand(), torch.rand(1), torch.randperm(9, generator=gen)
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"], gen)
    got = (random.random(), np.random.rand(), torch.rand(1).item(), torch.randperm(9, generator=gen).tolist())
    assert got == expected


def test_failed_write_keeps_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "config": {}, "epoch": 1})

    def crash(obj, handle, *args, **kwargs):  # simulate a kill half-way through writing
        handle.write(b"partial garbage")
        raise KeyboardInterrupt

    monkeypatch.setattr(ck.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"model": {"w": torch.zeros(2)}, "config": {}, "epoch": 2})
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_non_checkpoint_files_name_the_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(DataError) as info:
        load_checkpoint(text)
    assert "notes.txt" in str(info.value)
    foreign = tmp_path / "weights.pt"
    torch.save({"state_dict": {"w": torch.ones(1)}}, foreign)
    with pytest.raises(DataError, match="weights.pt.*not an rlar checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(DataError, match="missing.pt.*does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_a_writer_killed_mid_write_leaves_no_temporary_file_after_the_next_save(tmp_path: Path) -> None:
    """kill -9 during a checkpoint write leaves ``.last.pt.<random>.tmp`` (no handler runs); the next save removes it."""
    leftover = tmp_path / ".last.pt.abc123.tmp"
    leftover.write_bytes(b"half a checkpoint")
    other = tmp_path / ".best.pt.xyz.tmp"  # another checkpoint's leftover is that checkpoint's business
    other.write_bytes(b"x")
    save_checkpoint(tmp_path / "last.pt", {"model": {}, "config": {}, "epoch": 1})
    assert not leftover.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".best.pt.xyz.tmp", "last.pt"]
