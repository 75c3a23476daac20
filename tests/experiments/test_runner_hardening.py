"""The runner's side of issue 23: an empty or torn metrics.json is not a finished run, one resume rule with the
trainer (training.cpu_threads), and an empty .lock left by a killed writer does not block its run forever."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import yaml

from rlar.experiments.grid import expand, load_grid
from rlar.experiments.lock import LOCK_FILE, UNIDENTIFIED_STALE_S, RunLock
from rlar.experiments.runner import IGNORED_KEYS, finished_run_difference, run_grid
from rlar.training.config_diff import RESUME_FREE_KEYS
from tests.experiments._fake_train import fake_train


def test_an_empty_or_torn_metrics_file_is_not_a_finished_run(tiny_grid: Path, tmp_path: Path) -> None:
    grid = expand(load_grid(tiny_grid), methods=["vanilla_mtl"], seeds=[0])
    out = tmp_path / "out"
    assert [r.status for r in run_grid(grid, out, train_fn=fake_train, progress=False)] == ["trained"] * 2
    empty, torn = out / "vanilla_mtl/seed0/fold0", out / "vanilla_mtl/seed0/fold1"
    (empty / "metrics.json").write_text("")  # e.g. a full disk or a kill while it was written
    (torn / "metrics.json").write_text('{"test": {"dice": 0.')
    (torn / "checkpoints").mkdir()
    (torn / "checkpoints" / "last.pt").write_bytes(b"")
    assert finished_run_difference(empty, {"anything": "else"}) is None  # not finished: nothing to compare
    statuses = {r.rel_dir: r.status for r in run_grid(grid, out, train_fn=fake_train, progress=False)}
    assert statuses == {"vanilla_mtl/seed0/fold0": "trained", "vanilla_mtl/seed0/fold1": "resumed"}
    assert (empty / "calls.txt").read_text().split() == ["fresh", "fresh"]
    assert (torn / "calls.txt").read_text().split() == ["fresh", "resume"]


def test_thread_count_is_one_rule_for_runner_and_trainer(tiny_grid: Path, tmp_path: Path) -> None:
    assert {("data", "split_file")} == IGNORED_KEYS - RESUME_FREE_KEYS  # the grid's file path, nothing else
    assert ("training", "cpu_threads") in RESUME_FREE_KEYS
    grid = expand(load_grid(tiny_grid), methods=["vanilla_mtl"], folds=[0], seeds=[0])
    out = tmp_path / "out"
    run_grid(grid, out, train_fn=fake_train, progress=False)
    raw = yaml.safe_load(tiny_grid.read_text())
    raw["overrides"] = [o for o in raw["overrides"] if not o.startswith("training.cpu_threads")] + [
        "training.cpu_threads=2"]
    more = tmp_path / "more_threads.yaml"
    more.write_text(yaml.safe_dump(raw))
    (result,) = run_grid(expand(load_grid(more), methods=["vanilla_mtl"], folds=[0], seeds=[0]), out,
                         train_fn=fake_train, progress=False)
    assert result.status == "skipped"


def test_an_old_empty_lock_is_stale_a_fresh_one_is_respected(tmp_path: Path) -> None:
    lock_path = tmp_path / LOCK_FILE
    lock_path.write_text("")  # a writer killed between creating the file and writing its line
    with RunLock(tmp_path) as lock:  # fresh: maybe being written right now
        assert not lock.acquired and lock.owner == "unknown (empty lock file)"
    old = time.time() - UNIDENTIFIED_STALE_S - 5
    os.utime(lock_path, (old, old))
    with RunLock(tmp_path) as lock:
        assert lock.acquired
        assert lock_path.read_text().split()[:2] == [socket.gethostname(), str(os.getpid())]
    lock_path.write_text("garbage\n")  # a writer that cannot be identified, as old
    os.utime(lock_path, (old, old))
    with RunLock(tmp_path) as lock:
        assert lock.acquired
    lock_path.write_text(f"other-host.example {os.getpid()} 0\n")  # identified, on another host: kept, however old
    os.utime(lock_path, (old, old))
    with RunLock(tmp_path) as lock:
        assert not lock.acquired and lock.owner is not None and lock.owner.startswith("other-host.example")
