"""rlar.runs: one module owns the run-folder and grid layout (file names, fold and seed folders, chosen checkpoint)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlar import runs
from rlar.errors import DataError


def _run(path: Path, *names: str) -> Path:
    (path / runs.CHECKPOINT_DIR).mkdir(parents=True)
    for name in names or (runs.BEST,):
        (path / runs.CHECKPOINT_DIR / name).write_bytes(b"PK")
    return path


def test_find_runs_of_every_layout(tmp_path: Path) -> None:
    single = _run(tmp_path / "single")
    assert [r.path for r in runs.find_runs(single)] == [single]
    for k in (2, 0, 10, 1):
        _run(runs.train_fold_dir(tmp_path / "train_all", k))
    assert [r.fold for r in runs.find_runs(tmp_path / "train_all")] == [0, 1, 2, 10]
    for seed, fold in ((1, 0), (0, 1), (0, 0)):
        _run(runs.grid_run_dir(tmp_path / "grid", "rlar", seed, fold))
    arm = runs.find_runs(tmp_path / "grid" / "rlar")
    assert [(r.seed, r.fold) for r in arm] == [(0, 0), (0, 1), (1, 0)]
    assert [r.label for r in runs.find_runs(tmp_path / "grid" / "rlar" / "seed1")] == ["seed1/fold0"]
    assert runs.find_runs(tmp_path / "grid") == [] and runs.find_runs(tmp_path / "missing") == []
    assert [r.fold for r in runs.select_runs("x", arm, folds=[1])] == [1]
    with pytest.raises(DataError, match=r"seed\(s\) \[7\]"):
        runs.select_runs("x", arm, seeds=[7])


def test_chosen_checkpoint_and_finished(tmp_path: Path) -> None:
    run = _run(tmp_path / "r", runs.BEST, runs.LAST)
    assert runs.chosen_checkpoint(run) == run / "checkpoints" / "best.pt"
    assert not runs.is_finished(run)
    (run / runs.METRICS_FILE).write_text("")  # a torn metrics.json is not a finished run
    assert not runs.is_finished(run)
    (run / runs.METRICS_FILE).write_text(json.dumps({"run": {"checkpoint": "/elsewhere/checkpoints/last.pt"}}))
    assert runs.is_finished(run) and runs.chosen_checkpoint(run) == run / "checkpoints" / "last.pt"
    assert runs.run_dir_of(run / "checkpoints" / "best.pt") == run
    with pytest.raises(DataError, match="has no checkpoint"):
        runs.chosen_checkpoint(tmp_path)


def test_read_config_dict_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        runs.read_config_dict(tmp_path)
    (tmp_path / runs.CONFIG_FILE).write_text("- a list")
    with pytest.raises(DataError, match="not a mapping"):
        runs.read_config_dict(tmp_path)
