"""Which machine trained each run: environment names, the report's list of them, and the caption's warning."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from rlar.reporting.collect import load_grid_data
from rlar.reporting.environments import (
    NOT_RECORDED,
    describe,
    environment_id,
    mixing_note,
    numeric_environment,
    summarize,
)
from rlar.reporting.report import RUNS_FILE, build_tables, write_report
from rlar.reporting.tables import caption
from tests.reporting._fake_grid import write_fake_grid

MACHINE_A = {"host": "vm", "cpu": "Intel(R) Xeon(R) Processor", "cpu_features": ["avx2", "avx512f"], "cpu_count": 2,
             "torch_threads": 1, "device": "cpu", "python": "3.11.7", "torch": "2.13.0+cpu", "numpy": "2.4.6",
             "monai": "1.6.1", "platform": "Linux-6.18"}
MACHINE_B = {**MACHINE_A, "cpu_features": ["avx2"]}


@pytest.fixture(scope="module")
def plain_grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_grid(tmp_path_factory.mktemp("grid") / "fake")


def _record(run: Path, environment: dict) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["run"]["environment"] = environment
    (run / "metrics.json").write_text(json.dumps(metrics))


def test_environment_name_ignores_host_and_os_but_not_cpu_features() -> None:
    a = numeric_environment(MACHINE_A)
    assert a is not None and "host" not in a and "platform" not in a
    renamed = numeric_environment({**MACHINE_A, "host": "other", "platform": "Linux-7"})
    assert renamed is not None and environment_id(renamed) == environment_id(a)
    b = numeric_environment(MACHINE_B)
    assert b is not None and environment_id(b) != environment_id(a)
    assert len(environment_id(a)) == 8
    assert numeric_environment(None) is None and numeric_environment({}) is None
    assert describe(a) == ("Intel(R) Xeon(R) Processor, avx2+avx512f, device cpu, 1 torch thread(s), "
                           "torch 2.13.0+cpu, numpy 2.4.6")


def test_summary_counts_runs_per_environment_and_puts_unrecorded_last() -> None:
    a, b = numeric_environment(MACHINE_A), numeric_environment(MACHINE_B)
    assert a is not None and b is not None
    summary = summarize([("rlar", a), ("rlar", a), ("pcgrad", b), ("vanilla_mtl", None), ("rlar", b), ("pcgrad", b)])
    assert [(s.name, s.n_runs, s.arms) for s in summary] == [
        (environment_id(b), 3, ("pcgrad", "rlar")), (environment_id(a), 2, ("rlar",)), (NOT_RECORDED, 1, ("vanilla_mtl",))]
    assert mixing_note([environment_id(a)] * 3) == "" and mixing_note([NOT_RECORDED] * 2) == ""
    assert "2 recorded environment(s)" in mixing_note([environment_id(a), environment_id(b)])
    assert "1 recorded environment(s) and some have no record" in mixing_note([environment_id(a), NOT_RECORDED])


def test_report_without_records_is_unchanged(plain_grid: Path, tmp_path: Path) -> None:
    write_report(plain_grid, tmp_path / "r", draw_figures=False, n_resamples=50)
    assert "environment" not in pd.read_csv(tmp_path / "r" / RUNS_FILE).columns
    text = (tmp_path / "r" / "report.md").read_text()
    assert "## Environments" not in text and "recorded environment" not in text


def test_report_names_the_environment_of_each_run_and_warns_when_a_table_mixes(plain_grid: Path,
                                                                               tmp_path: Path) -> None:
    grid_dir = tmp_path / "mixed"
    shutil.copytree(plain_grid, grid_dir)
    for run in sorted(grid_dir.glob("rlar/seed*/fold*")):
        _record(run, MACHINE_A)
    for run in sorted(grid_dir.glob("guided_mtl/seed*/fold*")):
        _record(run, MACHINE_B)
    grid = load_grid_data(grid_dir)
    name_a = environment_id(numeric_environment(MACHINE_A) or {})
    assert {r.environment_name for r in grid.runs_of("rlar")} == {name_a}
    assert {r.environment_name for r in grid.runs_of("vanilla_mtl")} == {NOT_RECORDED}

    table = build_tables(grid, n_resamples=50)[0]
    assert "trained in 2 recorded environment(s) and some have no record" in caption(table)
    write_report(grid_dir, tmp_path / "r", draw_figures=False, n_resamples=50)
    runs = pd.read_csv(tmp_path / "r" / RUNS_FILE)
    assert set(runs.loc[runs["arm"] == "rlar", "environment"]) == {name_a}
    assert set(runs.loc[runs["arm"] == "vanilla_mtl", "environment"]) == {NOT_RECORDED}
    text = (tmp_path / "r" / "report.md").read_text()
    assert "## Environments" in text
    assert f"| {name_a} | 3 | rlar | Intel(R) Xeon(R) Processor, avx2+avx512f," in text
    assert f"| {NOT_RECORDED} | 3 | vanilla_mtl | runs written before rlar recorded the environment |" in text

    # one machine for every run: the list stays, the caption's warning goes
    for run in sorted(grid_dir.glob("*/seed*/fold*")):
        _record(run, MACHINE_A)
    table = build_tables(load_grid_data(grid_dir), n_resamples=50)[0]
    assert "recorded environment" not in caption(table)


def test_numeric_keys_are_keys_the_trainer_records() -> None:
    """The report reads these names from what rlar.training.environment writes; a renamed key must fail here, not
    silently drop out of every environment name."""
    import torch

    from rlar.reporting.environments import NUMERIC_KEYS
    from rlar.training.environment import run_environment

    recorded = run_environment(torch.device("cpu"))
    assert set(NUMERIC_KEYS) - {"gpu"} <= set(recorded)  # "gpu" is recorded on CUDA devices only
