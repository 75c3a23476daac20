"""Trainer behaviour on tiny real runs: exact resume after a kill, NaN guard, learning-rate schedule."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from rlar.training.checkpoint import load_checkpoint
from rlar.training.config import OptimConfig, load_config
from rlar.training.run import run_training
from rlar.training.trainer import Trainer, TrainingDiverged, build_scheduler
from tests.training import _tiny


class Killed(Exception):
    """Stands for SIGKILL: raised right after a given checkpoint is on disk, so nothing else runs."""


def assert_same_weights(a: Path, b: Path) -> None:
    sa, sb = load_checkpoint(a), load_checkpoint(b)
    assert sa["model"].keys() == sb["model"].keys()
    for name in sa["model"]:
        assert torch.equal(sa["model"][name], sb["model"][name]), f"parameter {name} differs after resume"
    assert sa["global_step"] == sb["global_step"]
    for key, value in sa["optimizer"]["state"].items():
        assert torch.equal(value["exp_avg"], sb["optimizer"]["state"][key]["exp_avg"])


def test_resume_after_kill_matches_uninterrupted_run(tmp_path: Path, tiny_source: type, tiny_overrides: list[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # augmentation on, dropout on: resuming must restore the data order and every random stream
    cfg = load_config(None, [*tiny_overrides, "optim.epochs=2", "data.augment=true",
                             "model.options={compact_channels: [4, 8, 8, 8], encoder_dropout: 0.2}"])
    run_training(cfg, tmp_path / "straight", progress=False)

    original_save = Trainer.save

    def save_then_die(self: Trainer, path: Path) -> None:
        original_save(self, path)
        if path == self.last_path and self.state.epoch == 1:
            raise Killed

    monkeypatch.setattr(Trainer, "save", save_then_die)
    with pytest.raises(Killed):
        run_training(cfg, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(Trainer, "save", original_save)
    assert load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["epoch"] == 1
    run_training(cfg, tmp_path / "resumed", resume=True, progress=False)

    assert_same_weights(tmp_path / "straight/checkpoints/last.pt", tmp_path / "resumed/checkpoints/last.pt")
    # the log was continued, not restarted: one row per epoch
    log = (tmp_path / "resumed" / "log.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in log[1:]] == ["1", "2"]


def test_resume_refuses_a_different_config(tmp_path: Path, tiny_source: type, tiny_overrides: list[str]) -> None:
    from rlar.errors import ConfigError, DataError

    cfg = load_config(None, [*tiny_overrides, "optim.epochs=1"])
    with pytest.raises(DataError, match="cannot resume"):
        run_training(cfg, tmp_path / "never", resume=True, progress=False)
    run_training(cfg, tmp_path / "run", progress=False)
    changed = load_config(None, [*tiny_overrides, "optim.epochs=1", "optim.lr=0.5"])
    with pytest.raises(ConfigError) as info:
        run_training(changed, tmp_path / "run", resume=True, progress=False)
    assert info.value.key == "optim.lr"


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path, tiny_source: type, tiny_overrides: list[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def nan_from_epoch_3(losses: dict, step: int) -> dict:
        if step > 4:  # 2 steps per epoch: epoch 3 goes bad
            losses["seg"] = losses["seg"] * float("nan")
        return losses

    _tiny.poison_loss(monkeypatch, nan_from_epoch_3)
    # the competition probe also calls the loss with gradients on; off, so the count is the training steps'
    cfg = load_config(None, [*tiny_overrides, "optim.epochs=4", "training.competition_probe=0"])
    with pytest.raises(TrainingDiverged) as info:
        run_training(cfg, tmp_path, progress=False)
    message = str(info.value)
    assert "epoch 3" in message and "step 1" in message and "seg=nan" in message
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["epoch"] == 2
    assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())


def test_schedule_warms_up_then_decays_to_zero() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=1.0)
    sched = build_scheduler(opt, OptimConfig(lr=1.0, epochs=10, warmup_epochs=2), steps_per_epoch=5)
    lrs = []
    for _ in range(50):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] < lrs[5] < lrs[9] <= 1.0  # linear warm-up over 10 steps
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # then monotone cosine decay
    assert math.isclose(max(lrs), 1.0, rel_tol=0.05) and lrs[-1] < 0.01


KILL_SCRIPT = """
import time
import torch
torch.set_num_threads(1)
from tests.training import _tiny
import rlar.training.run as run_module
from rlar.training.config import load_config
from rlar.training.trainer import Trainer
run_module.open_source = _tiny.open_tiny
original = Trainer._validate
def slow_validate(self):
    time.sleep(0.5)  # leave the test time to kill the process mid-run
    return original(self)
Trainer._validate = slow_validate
run_module.run_training(load_config(None, {overrides!r}), {out!r}, progress=False)
"""


# A fresh interpreter importing torch + monai, SIGKILLed after its first checkpoint and resumed (kept in CI).
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path: Path, tiny_source: type,
                                                       tiny_overrides: list[str]) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    overrides = [*tiny_overrides, "optim.epochs=5", "data.augment=true"]
    killed_dir = tmp_path / "killed"
    script = KILL_SCRIPT.format(overrides=overrides, out=str(killed_dir))
    # the repository root on the child's path, so it imports the tiny source as the package module tests.training._tiny
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    last = killed_dir / "checkpoints" / "last.pt"
    deadline = time.time() + 300
    try:
        while not last.exists():
            assert proc.poll() is None, "training subprocess exited before writing a checkpoint"
            assert time.time() < deadline, "no checkpoint within 300 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(last)["epoch"] < 5  # really interrupted

    cfg = load_config(None, overrides)
    run_training(cfg, killed_dir, resume=True, progress=False)
    run_training(cfg, tmp_path / "straight", progress=False)
    assert_same_weights(tmp_path / "straight/checkpoints/last.pt", last)
