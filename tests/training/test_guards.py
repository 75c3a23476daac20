"""Hardening of training (issue 11): clear, file-naming errors and a divergence guard instead of tracebacks."""

from __future__ import annotations

import errno
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

import rlar.training.checkpoint as ck
import rlar.training.run as run_module
from rlar.cli.main import main
from rlar.errors import DataError
from rlar.strategies import StepReport
from rlar.strategies.base import LossFn, Strategy
from rlar.training.checkpoint import load_checkpoint, save_checkpoint
from rlar.training.config import load_config
from rlar.training.run import run_training
from rlar.training.trainer import DivergenceGuard
from tests.training import _tiny


def _sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def test_zero_byte_checkpoint_is_a_data_error_naming_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "best.pt"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="best.pt: checkpoint file is empty"):
        load_checkpoint(empty)
    truncated = tmp_path / "cut.pt"
    save_checkpoint(truncated, {"model": {"w": torch.ones(3)}, "config": {}, "epoch": 1})
    truncated.write_bytes(truncated.read_bytes()[:40])
    with pytest.raises(DataError, match="cut.pt: not a readable rlar checkpoint") as info:
        load_checkpoint(truncated)
    assert "weights_only=False" not in str(info.value)  # never pass on the unsafe advice
    with pytest.raises(DataError, match="is a folder"):
        load_checkpoint(tmp_path)


def test_train_resume_from_a_zero_byte_checkpoint_exits_2(tmp_path: Path, tiny_source: type, tiny_overrides: list[str],
                                                           capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.pt").write_bytes(b"")
    code = main(["train", "--config", "phantom", *_sets(tiny_overrides), "--out", str(out), "--resume",
                 "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "last.pt" in err and "empty" in err and "Traceback" not in err


def test_checkpoint_write_failure_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {}, "config": {}, "epoch": 1})

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck.os, "replace", disk_full)
    with pytest.raises(DataError, match="last.pt: cannot write the checkpoint \\(No space left on device"):
        save_checkpoint(path, {"model": {}, "config": {}, "epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    with pytest.raises(DataError, match="cannot write the checkpoint"):
        save_checkpoint(path / "sub" / "x.pt", {"model": {}, "config": {}, "epoch": 1})  # parent is a file


def test_unwritable_output_folder_fails_before_any_work(tmp_path: Path, tiny_source: type, tiny_overrides: list[str],
                                                        capsys: pytest.CaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    opened: list[str] = []

    def counting_open(*args: Any, **kwargs: Any) -> _tiny.TinySource:
        opened.append("x")
        return _tiny.open_tiny(*args, **kwargs)

    monkeypatch.setattr(run_module, "open_source", counting_open)
    code = main(["train", "--config", "phantom", *_sets(tiny_overrides), "--out", str(blocker / "run"),
                 "--no-progress"])
    assert code == 2 and not opened  # refused before the data were even read
    assert "a_file/run: the run folder is not writable" in capsys.readouterr().err


def test_divergence_guard_unit() -> None:
    guard = DivergenceGuard(factor=1000, window=3, min_loss=1.0)
    assert all(guard.update(v) is None for v in (2.0, 1.8, 1.5, 1.2, 1.1, 1.3, 5.0, 9.0))
    reason = None
    for value in (7e4, 7e6, 9e15):
        reason = reason or guard.update(value)
    assert reason is not None and "diverged" in reason and "factor=1000" in reason
    assert DivergenceGuard(1000, 3, 1.0, enabled=False).update(1e30) is None


def test_loss_blowing_up_stops_the_run_with_exit_2_and_keeps_the_last_good_checkpoint(
        tmp_path: Path, tiny_source: type, tiny_overrides: list[str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    def exploding(losses: dict, step: int) -> dict:
        if step > 2:  # epoch 1 is healthy; then the loss grows 7e4 -> 9e15, finite throughout
            scale = 7e4 * (9e15 / 7e4) ** min(1.0, (step - 3) / 4)
            losses["seg"] = losses["seg"] * scale / max(float(losses["seg"].detach()), 1e-6)
        return losses

    _tiny.poison_loss(monkeypatch, exploding)
    out = tmp_path / "run"
    # no competition probe: its loss calls before training would count as steps, and epoch 1 would not be healthy
    overrides = [*tiny_overrides, "optim.epochs=6", "training.divergence.window=2", "optim.grad_clip=null",
                 "data.n_folds=2", "training.competition_probe=0"]
    code = main(["train", "--config", "phantom", *_sets(overrides), "--out", str(out), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "the loss diverged" in err and "last good checkpoint is kept" in err and "Traceback" not in err
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert last["epoch"] >= 1 and not (out / "metrics.json").exists()
    assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())


class _ReportingStrategy(torch.nn.Module):
    """Wraps a strategy and adds fixed extra keys to its report (one finite, one never measured)."""

    def __init__(self, inner: Strategy) -> None:
        super().__init__()
        self.inner = inner

    def step(self, model: torch.nn.Module, batch: Mapping[str, Any], loss_fn: LossFn, step: int) -> StepReport:
        report = self.inner.step(model, batch, loss_fn, step)
        return StepReport(losses=report.losses, total=report.total, cosine=report.cosine,
                          extra={**report.extra, "penalty": 0.25 + step, "unmeasured": math.nan})


def test_log_has_epoch_means_of_every_extra_key(tmp_path: Path, tiny_source: type, tiny_overrides: list[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    build = run_module.build_components

    def wrapped(*args, **kwargs):
        model, strategy, loss_fn = build(*args, **kwargs)
        assert isinstance(strategy, Strategy)
        return model, _ReportingStrategy(strategy), loss_fn

    monkeypatch.setattr(run_module, "build_components", wrapped)
    run_training(load_config(None, [*tiny_overrides, "optim.epochs=2"]), tmp_path, progress=False)
    log = pd.read_csv(tmp_path / "log.csv")
    steps = log["global_step"].tolist()  # cumulative steps at the end of each epoch
    first = [0.25 + s for s in range(steps[0])]
    assert log["extra_penalty"].iloc[0] == pytest.approx(sum(first) / len(first))
    assert log["extra_unmeasured"].isna().all()  # never finite: an empty column, not a crash
    assert log["cosine"].between(-1, 1).all()


def test_selection_last_tests_the_last_epoch(tmp_path: Path, tiny_source: type, tiny_overrides: list[str]) -> None:
    metrics = run_training(load_config(None, [*tiny_overrides, "optim.epochs=2", "training.selection=last"]),
                           tmp_path, progress=False)
    assert metrics["run"]["checkpoint"].endswith("last.pt") and metrics["run"]["checkpoint_epoch"] == 2
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["run"]["selection"] == "last" and saved["test"]["n_images"] == metrics["run"]["n_test"]


class _BrokenTiny(_tiny.TinySource):
    def _load(self, info):
        if info.image_id == "c3_0":
            raise DataError(f"/data/{info.image_id}.png", "zero-byte file")
        return super()._load(info)


def test_train_skips_unreadable_images_and_lists_them(tmp_path: Path, tiny_source: type, tiny_overrides: list[str],
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(run_module, "open_source", lambda name, root=None, **o: _BrokenTiny(root, **o))
    out = tmp_path / "run"
    overrides = [*tiny_overrides, "optim.epochs=1", "data.group_by_content=true"]  # the phantom file turns it off
    assert main(["train", "--config", "phantom", *_sets(overrides), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "skipped 1 unreadable image(s):" in printed and "c3_0: /data/c3_0.png: zero-byte file" in printed
    folds = json.loads((out / "splits.json").read_text())
    assert all("c3_0" not in fold[side] for fold in folds for side in fold)
    assert any("c3_0" in s for s in json.loads((out / "metrics.json").read_text())["run"]["skipped"])


def test_misspelt_set_key_through_the_cli(capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--config", "phantom", "--set", "optim.epocs=2"]) == 2
    assert "did you mean 'optim.epochs'?" in capsys.readouterr().err


def test_bad_split_file_through_the_cli(tmp_path: Path, tiny_source: type, tiny_overrides: list[str],
                                        capsys: pytest.CaptureFixture) -> None:
    split = tmp_path / "splits.json"
    split.write_text(json.dumps([{"train": None, "val": [], "test": []}]))
    code = main(["train", "--config", "phantom", *_sets([*tiny_overrides, f"data.split_file={split}"]),
                 "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 2
    assert "fold 0 'train'" in capsys.readouterr().err
