"""Hardening of training, second round (issue 23; issue 21 item 7): a finished run is never silently replaced, the
divergence guard sees a blow-up in its first window, metrics.json is written atomically, one resume rule for
training.cpu_threads, non-UTF-8 file names, one line per epoch without progress bars, a warm-up longer than the run,
and a missing data.root named in train's own spelling."""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

import rlar.training.run as run_module
from rlar.cli.main import main
from rlar.errors import DataError
from rlar.training.config import OptimConfig, load_config
from rlar.training.config_diff import RESUME_FREE_KEYS, config_difference
from rlar.training.run import printable, run_training, write_text
from rlar.training.trainer import DivergenceGuard, build_scheduler, effective_warmup_epochs, epoch_line
from tests.training import _tiny


def _sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


# -- 1. a finished run is not replaced without --resume or --overwrite; 8. one line per epoch ---------------------


def test_train_refuses_a_finished_run_unless_resume_or_overwrite(tmp_path: Path, tiny_source: type,
                                                                 tiny_overrides: list[str],
                                                                  capsys: pytest.CaptureFixture,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    overrides = [*tiny_overrides, "optim.epochs=2"]
    assert main(["train", "--config", "phantom", *_sets(overrides), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    # --no-progress still prints one line per epoch: losses, validation score, seconds (issue 21 item 7)
    lines = [line for line in printed.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert all("loss " in line and "(seg " in line and "val_score " in line and line.endswith(" s") for line in lines)
    finished = (out / "metrics.json").read_text()

    opened: list[str] = []

    def counting_open(*args: Any, **kwargs: Any) -> _tiny.TinySource:
        opened.append("x")
        return _tiny.open_tiny(*args, **kwargs)

    monkeypatch.setattr(run_module, "open_source", counting_open)
    other = [*_sets(overrides), "--set", "method=seg_only"]  # even another config: refused, nothing read
    assert main(["train", "--config", "phantom", *other, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "holds a finished run (metrics.json)" in err and "--resume" in err and "--overwrite" in err
    assert not opened and (out / "metrics.json").read_text() == finished

    assert main(["train", "--config", "phantom", *other, "--out", str(out), "--resume", "--overwrite"]) == 2
    assert "cannot be combined with --resume" in capsys.readouterr().err

    assert main(["train", "--config", "phantom", *other, "--out", str(out), "--overwrite", "--no-progress"]) == 0
    assert json.loads((out / "metrics.json").read_text())["run"]["method"] == "seg_only"


def test_train_refuses_an_interrupted_run_without_resume(tmp_path: Path, tiny_source: type, tiny_overrides: list[str],
                                                         capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.pt").write_bytes(b"not trained over")
    assert main(["train", "--config", "phantom", *_sets(tiny_overrides), "--out", str(out), "--no-progress"]) == 2
    assert "holds an unfinished run (checkpoints/last.pt)" in capsys.readouterr().err
    assert (out / "checkpoints" / "last.pt").read_bytes() == b"not trained over"


def test_library_callers_overwrite_and_old_checkpoints_are_removed_first(tmp_path: Path, tiny_source: type,
                                                                         tiny_overrides: list[str]) -> None:
    """run_training's default (the demo, the experiment runner) replaces its own folder, and a stale best.pt of the
    old run can never be what the new run reports."""
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best.pt").write_bytes(b"old run")
    (tmp_path / "metrics.json").write_text("{}")
    cfg = load_config(None, [*tiny_overrides, "optim.epochs=1", "training.selection=last"])
    run_training(cfg, tmp_path, progress=False)
    assert not (tmp_path / "checkpoints" / "best.pt").exists() or \
        (tmp_path / "checkpoints" / "best.pt").read_bytes() != b"old run"
    with pytest.raises(Exception, match="holds a finished run"):
        run_training(cfg, tmp_path, progress=False, overwrite=False)


# -- 2. the divergence guard and a blow-up in its first window -----------------------------------------------------


def test_guard_catches_a_blow_up_inside_its_first_window() -> None:
    guard = DivergenceGuard(factor=1000, window=3, min_loss=1.0)
    reasons = [guard.update(v) for v in (2.0, 1.9, *[1.2e17] * 4)]
    assert reasons[:4] == [None] * 4  # the first window mean is itself blown up: the trend rule alone never fires
    assert reasons[4] is not None and "scale of the first 3 steps" in reasons[4] and "factor=1000" in reasons[4]


def test_guard_leaves_heavy_tailed_but_healthy_batches_alone() -> None:
    """One batch far above the others (seen: L_rad 4.5e6 next to 189 on a tiny fold) is not a divergence."""
    guard = DivergenceGuard(factor=1000, window=10, min_loss=1.0)
    assert all(guard.update(v) is None for v in [189.0, 4.5e6] * 50)
    negative = DivergenceGuard(factor=1000, window=3, min_loss=1.0)  # uncertainty weighting can start below zero
    assert all(negative.update(v) is None for v in (-0.5, -2.0, -1.0)) and negative.first_scale == 1.0
    capped = DivergenceGuard(factor=1000, window=3, min_loss=1.0, max_loss=1e6)
    assert capped.update(1.2e17) is not None and "max_loss=1e+06" in (capped.update(1.2e17) or "")


def test_epoch_one_blow_up_stops_the_run_before_metrics(tmp_path: Path, tiny_source: type, tiny_overrides: list[str],
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    def exploding(losses: dict, step: int) -> dict:
        if step > 1:  # from the second step on: 1.2e17, finite throughout (the probe's case)
            losses["seg"] = losses["seg"] * 1.2e17 / max(float(losses["seg"].detach()), 1e-6)
        return losses

    _tiny.poison_loss(monkeypatch, exploding)
    out = tmp_path / "run"
    overrides = [*tiny_overrides, "optim.epochs=4", "training.divergence.window=2", "training.competition_probe=0"]
    assert main(["train", "--config", "phantom", *_sets(overrides), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "the loss diverged" in err and "scale of the first" in err and "Traceback" not in err
    assert not (out / "metrics.json").exists()


# -- 3. metrics.json is written atomically -------------------------------------------------------------------------


def test_result_files_are_replaced_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "metrics.json"
    write_text(path, '{"test": 1}')
    assert json.loads(path.read_text()) == {"test": 1}

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_module.os, "replace", disk_full)
    with pytest.raises(DataError, match="metrics.json: cannot write \\(No space left on device\\)"):
        write_text(path, '{"test": 2}')
    assert json.loads(path.read_text()) == {"test": 1}  # the old file is whole, never half-written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temporary file left behind


# -- 4. training.cpu_threads may change on resume (one rule with the runner) ---------------------------------------


def test_cpu_threads_is_free_on_resume_as_in_the_runner(tmp_path: Path, tiny_source: type,
                                                        tiny_overrides: list[str]) -> None:
    from rlar.experiments.runner import IGNORED_KEYS

    assert ("training", "cpu_threads") in RESUME_FREE_KEYS and RESUME_FREE_KEYS <= IGNORED_KEYS
    assert config_difference({"training": {"cpu_threads": 1}}, {"training": {"cpu_threads": 2}}) is None
    cfg = load_config(None, [*tiny_overrides, "optim.epochs=1"])
    run_training(cfg, tmp_path, progress=False)
    more_threads = load_config(None, [*tiny_overrides, "optim.epochs=1", "training.cpu_threads=2"])
    try:
        metrics = run_training(more_threads, tmp_path, resume=True, progress=False)
    finally:
        torch.set_num_threads(1)  # the test session's setting (conftest)
    assert metrics["run"]["epochs_run"] == 1


# -- 7. file names that are not UTF-8 ------------------------------------------------------------------------------


class _OddNames(_tiny.TinySource):
    """Image ids as Python holds file names that are not UTF-8 (os.fsdecode: lone surrogates)."""

    def _scan(self):
        for info in super()._scan():
            yield dataclasses.replace(info, image_id=info.image_id + "\udcff")


def test_non_utf8_names_do_not_end_train_in_a_traceback(tmp_path: Path, tiny_source: type, tiny_overrides: list[str],
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    assert printable("case1\udcff.png") == "case1\\xff.png" and printable("ok é") == "ok é"
    monkeypatch.setattr(run_module, "open_source", lambda name, root=None, **o: _OddNames(root, **o))
    out = tmp_path / "run"
    # augmentation off: rlar.data.augment.sample_seed cannot encode such an id yet (reported to its owner)
    overrides = [*tiny_overrides, "optim.epochs=1", "data.augment=false"]
    assert main(["train", "--config", "phantom", *_sets(overrides), "--out", str(out), "--no-progress"]) == 0
    assert "fold 0 test: " in capsys.readouterr().out
    table = pd.read_csv(out / "predictions_test.csv")  # valid UTF-8: the odd byte is written as \xff
    assert table["image_id"].str.endswith("\\xff").all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"]["n_test"] == len(table)


def test_a_run_folder_whose_name_is_not_utf8_is_refused_before_any_work(tmp_path: Path, tiny_source: type,
                                                                        tiny_overrides: list[str],
                                                                        capsys: pytest.CaptureFixture) -> None:
    out = Path(os.fsdecode(os.fsencode(tmp_path) + b"/run\xff"))
    assert main(["train", "--config", "phantom", *_sets(tiny_overrides), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "run\\xff: the run folder's name is not valid UTF-8" in err and "Traceback" not in err


# -- 8. epoch lines by parameter, the warm-up, the data.root message -----------------------------------------------


def test_epoch_lines_follow_a_parameter_not_a_guess(tmp_path: Path, tiny_source: type, tiny_overrides: list[str],
                                                    capsys: pytest.CaptureFixture) -> None:
    cfg = load_config(None, [*tiny_overrides, "optim.epochs=1"])
    run_training(cfg, tmp_path / "quiet", progress=False)  # the experiment runner's workers: no per-epoch lines
    assert "epoch 1/1" not in capsys.readouterr().out
    run_training(cfg, tmp_path / "lines", progress=False, epoch_lines=True)
    assert "epoch 1/1: loss " in capsys.readouterr().out
    row = {"epoch": 3, "total": 1.5, "loss_seg": 0.5, "loss_cls": 1.0, "cosine": math.nan, "val_score": 0.25,
           "time_s": 12.34}
    assert epoch_line(row, 20) == "epoch 3/20: loss 1.5000 (seg 0.5000, cls 1.0000), val_score 0.2500, 12.3 s"


def test_a_warm_up_as_long_as_the_run_is_clamped_with_a_note(tmp_path: Path, tiny_source: type,
                                                             tiny_overrides: list[str],
                                                             capsys: pytest.CaptureFixture) -> None:
    warmup, note = effective_warmup_epochs(OptimConfig(epochs=2, warmup_epochs=5))
    assert warmup == pytest.approx(0.2) and note is not None and "clamped to 0.2 epoch(s)" in note
    assert effective_warmup_epochs(OptimConfig(epochs=10, warmup_epochs=2)) == (2.0, None)
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=1.0)
    sched = build_scheduler(opt, OptimConfig(lr=1.0, epochs=2, warmup_epochs=5), steps_per_epoch=10)
    lrs = []
    for _ in range(20):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert max(lrs) > 0.9 and lrs[-1] < 0.05  # it peaks and decays instead of ending at the peak

    cfg = load_config(None, [*[o for o in tiny_overrides if "warmup" not in o], "optim.epochs=1",
                             "optim.warmup_epochs=5"])
    run_training(cfg, tmp_path, progress=False, epoch_lines=True)
    printed = capsys.readouterr().out
    assert printed.count("note: optim.warmup_epochs=5 is not shorter than optim.epochs=1") == 1


def test_missing_root_names_the_spelling_train_accepts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--config", "ddti", "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "config key 'data.root'" in err and "--set data.root=DIR" in err and "(--root DIR)" not in err
    assert not (tmp_path / "run").exists()  # refused before anything was created
