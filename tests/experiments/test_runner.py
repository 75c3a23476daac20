"""The grid runner with a fake trainer: shared splits, skip, resume, conflict, locks, shards, the CLI."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import yaml

import rlar.training.run
from rlar.cli.main import main
from rlar.data.splits import load_splits
from rlar.errors import ConfigError
from rlar.experiments.grid import expand, load_grid
from rlar.experiments.lock import LOCK_FILE
from rlar.experiments.runner import config_difference, run_grid
from tests.experiments._fake_train import fake_train


def _calls(run: Path) -> list[str]:
    return (run / "calls.txt").read_text().split()


def test_skip_resume_conflict_and_locks(tiny_grid: Path, tmp_path: Path) -> None:
    grid = expand(load_grid(tiny_grid), methods=["vanilla_mtl", "rlar"], seeds=[0])
    out = tmp_path / "out"
    first = run_grid(grid, out, train_fn=fake_train, progress=False)
    assert [r.status for r in first] == ["trained"] * 4
    assert [r.rel_dir for r in first] == ["vanilla_mtl/seed0/fold0", "rlar/seed0/fold0", "vanilla_mtl/seed0/fold1",
                                          "rlar/seed0/fold1"]
    # one split for the whole grid, and every run reads it (paired comparisons)
    folds = load_splits(out / "splits.json")
    assert len(folds) == 2
    for r in first:
        saved = yaml.safe_load((out / r.rel_dir / "config.yaml").read_text())
        assert saved["data"]["split_file"] == str((out / "splits.json").resolve())
    assert json.loads((out / "grid.json").read_text())["arms"][0]["name"] == "vanilla_mtl"

    # rerun: everything finished -> skipped, nothing retrained
    again = run_grid(grid, out, train_fn=fake_train, progress=False)
    assert [r.status for r in again] == ["skipped"] * 4
    assert _calls(out / "rlar/seed0/fold1") == ["fresh"]

    # an interrupted run (last checkpoint, no metrics) is resumed with resume=True
    run = out / "rlar/seed0/fold1"
    (run / "metrics.json").unlink()
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    statuses = {r.rel_dir: r.status for r in run_grid(grid, out, train_fn=fake_train, progress=False)}
    assert statuses["rlar/seed0/fold1"] == "resumed" and _calls(run) == ["fresh", "resume"]

    # a run held by a live worker is left alone; a lock of a dead process on this host is taken over
    live = out / "vanilla_mtl/seed0/fold0"
    (live / "metrics.json").unlink()
    (live / LOCK_FILE).write_text(f"{socket.gethostname()} {os.getpid()} 0\n")
    statuses = {r.rel_dir: r.status for r in run_grid(grid, out, train_fn=fake_train, progress=False)}
    assert statuses["vanilla_mtl/seed0/fold0"] == "locked"
    (live / LOCK_FILE).write_text(f"{socket.gethostname()} 999999999 0\n")
    statuses = {r.rel_dir: r.status for r in run_grid(grid, out, train_fn=fake_train, progress=False)}
    assert statuses["vanilla_mtl/seed0/fold0"] == "trained" and not (live / LOCK_FILE).exists()

    # a finished run with another config is never overwritten
    raw = yaml.safe_load(tiny_grid.read_text())
    raw["overrides"].append("optim.lr=0.5")
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(raw))
    other = expand(load_grid(changed), methods=["rlar"], folds=[0], seeds=[0])
    (result,) = run_grid(other, out, train_fn=fake_train, progress=False, full=grid)
    assert result.status == "conflict" and "optim.lr" in result.message
    # ... and a grid whose finished runs conflict trains nothing new into the folder: it names the --set that restores
    grid_runs = sorted(p.parent.relative_to(out) for p in out.rglob("metrics.json"))
    with pytest.raises(ConfigError, match=r"another 'optim.lr' .*--set optim.lr=0.001"):
        run_grid(other, out, train_fn=fake_train, progress=False)
    assert sorted(p.parent.relative_to(out) for p in out.rglob("metrics.json")) == grid_runs


def test_failed_run_is_recorded_and_the_grid_goes_on(tiny_grid: Path, tmp_path: Path) -> None:
    def broken(cfg, out_dir, **kwargs):  # noqa: ANN001, ANN003
        if cfg.method == "rlar":
            raise RuntimeError("boom")
        return fake_train(cfg, out_dir, **kwargs)

    grid = expand(load_grid(tiny_grid), folds=[0], seeds=[0])
    results = run_grid(grid, tmp_path / "out", train_fn=broken, progress=False)
    assert [r.status for r in results] == ["trained", "failed"]
    assert "boom" in (tmp_path / "out/rlar/seed0/fold0/error.txt").read_text()


def test_config_difference_ignores_where_it_ran() -> None:
    saved = {"training": {"device": "cpu", "seed": 0}, "data": {"num_workers": 0, "split_file": "/a"}}
    assert config_difference(saved, {"training": {"device": "cuda", "seed": 0},
                                     "data": {"num_workers": 4, "split_file": "/b"}}) is None
    assert config_difference(saved, {**saved, "training": {"device": "cpu", "seed": 1}}) == "training.seed"


def test_cli_shards_cover_the_grid_once(tiny_grid: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(rlar.training.run, "run_training", fake_train)
    out = tmp_path / "shared"
    for shard in ("0/3", "1/3", "2/3"):
        assert main(["experiment", "--config", str(tiny_grid), "--out", str(out), "--shard", shard,
                     "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "shard 0/3: 3 runs" in printed and "run 1 of 3" in printed
    runs = sorted(p.parent.relative_to(out).as_posix() for p in out.glob("*/seed*/fold*/calls.txt"))
    assert len(runs) == 8  # 2 methods x 2 seeds x 2 folds, each trained by exactly one shard
    assert all(_calls(out / r) == ["fresh"] for r in runs)
    assert main(["experiment", "--config", str(tiny_grid), "--out", str(out), "--no-progress"]) == 0
    assert "8 runs: 8 skipped" in capsys.readouterr().out
    assert main(["experiment", "--config", str(tiny_grid), "--out", str(out), "--list", "--methods", "rlar",
                 "--folds", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["  rlar/seed0/fold1", "  rlar/seed1/fold1"]


def test_grids_sharing_a_folder_keep_each_others_tables(tiny_grid: Path, tmp_path: Path) -> None:
    out = tmp_path / "shared"
    main_grid = expand(load_grid(tiny_grid), methods=["vanilla_mtl", "rlar"], seeds=[0])
    raw = yaml.safe_load(tiny_grid.read_text())
    raw.update(name="ablations", methods=[], ablations={"lambda_sweep": {"values": [0.3]}})
    ablation_file = tmp_path / "ablations.yaml"
    ablation_file.write_text(yaml.safe_dump(raw))
    ablations = expand(load_grid(ablation_file), seeds=[0])
    run_grid(main_grid, out, train_fn=fake_train, progress=False)
    shared = run_grid(ablations, out, train_fn=fake_train, progress=False)
    assert {r.rel_dir.split("/")[0] for r in shared if r.status == "skipped"} == {"rlar"}  # the main grid's rlar runs are reused
    document = json.loads((out / "grid.json").read_text())
    assert [t["name"] for t in document["tables"]] == ["main", "lambda_sweep"]
    assert [a["name"] for a in document["arms"]] == ["vanilla_mtl", "rlar", "lambda_sweep-0.3"]
    assert sorted(document["grids"]) == sorted({main_grid.grid.name, "ablations"})
    run_grid(main_grid, out, train_fn=fake_train, progress=False)  # the main grid again: the ablation stays
    assert [t["name"] for t in json.loads((out / "grid.json").read_text())["tables"]] == ["main", "lambda_sweep"]
    raw.update(name="other", overrides=[o for o in raw["overrides"] if o != "data.n_folds=2"] + ["data.n_folds=3"])
    ablation_file.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"finished run \S+/seed0/fold0 .* another 'data.n_folds' \(2\).*--set data.n_folds=2"):
        run_grid(expand(load_grid(ablation_file), seeds=[0]), out, train_fn=fake_train, progress=False)
    raw.update(methods=["seg_only"], ablations={})  # no finished run in common, but the split is still shared
    ablation_file.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="one folder shares one split"):
        run_grid(expand(load_grid(ablation_file), seeds=[0]), out, train_fn=fake_train, progress=False)


def test_held_lock_waits_its_turn_and_names_the_owner_on_timeout(tmp_path: Path) -> None:
    from rlar.experiments.lock import LockTimeout, RunLock, held_lock

    folder = tmp_path / ".grid"
    with held_lock(folder, timeout_s=1.0) as lock:
        assert lock.acquired and (folder / LOCK_FILE).is_file()
    assert not (folder / LOCK_FILE).exists()  # released after the block
    with RunLock(folder) as other:  # held by this live process: a second taker waits, then gives up
        assert other.acquired
        with pytest.raises(LockTimeout, match=f"held by {socket.gethostname()} {os.getpid()}"), \
                held_lock(folder, timeout_s=0.3, poll_s=0.05):
            pass
    # a timeout of the work inside the block is the work's own error, not the wait's, and the lock is released
    with pytest.raises(TimeoutError) as raised, held_lock(folder, timeout_s=1.0):
        raise TimeoutError("the work timed out")
    assert not isinstance(raised.value, LockTimeout) and not (folder / LOCK_FILE).exists()


def test_ensure_splits_reports_a_worker_stuck_holding_the_split_lock(tiny_grid: Path, tmp_path: Path) -> None:
    from rlar.errors import DataError
    from rlar.experiments.lock import RunLock
    from rlar.experiments.runner import ensure_splits

    grid = expand(load_grid(tiny_grid), methods=["vanilla_mtl"], seeds=[0])
    out = tmp_path / "out"
    with RunLock(out / ".splits") as other, pytest.raises(DataError, match="not written after 0 s"):
        assert other.acquired  # another (live) worker is making the split and never finishes
        ensure_splits(grid, out, timeout_s=0.2)
    assert not (out / "splits.json").exists()
    assert ensure_splits(grid, out, timeout_s=5.0) == out / "splits.json"  # free again: this worker makes it
