"""`rlar report` on a hand-written grid folder: layout, statistics, label spaces, byte-for-byte reproducibility."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from rlar.cli.main import main
from rlar.errors import ConfigError, DataError
from rlar.reporting.collect import load_grid_data
from rlar.reporting.report import RUNS_FILE, build_tables, runs_table, write_report
from rlar.reporting.tables import frame_metrics
from tests.reporting._fake_grid import DICE_SHIFT, write_fake_grid


@pytest.fixture(scope="module")
def grid_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_grid(tmp_path_factory.mktemp("grid") / "fake")


def test_tables_rows_comparisons_and_holm(grid_dir: Path) -> None:
    tables = build_tables(load_grid_data(grid_dir), n_resamples=300)
    keys = [(t.spec.name, t.evaluation.key, t.space) for t in tables]
    assert keys == [("main", "test", "levels"), ("main", "test", "binary")]
    levels = tables[0]
    assert [r.arm for r in levels.rows] == ["vanilla_mtl", "guided_mtl", "rlar"]  # the grid's order
    assert all(r.n_runs == 3 for r in levels.rows)
    # 3 pairs x 2 headline metrics, each with a CI, two p-values and their Holm adjustments
    assert [(c.a, c.b, c.metric) for c in levels.comparisons][:2] == [("guided_mtl", "vanilla_mtl", "dice"),
                                                                      ("guided_mtl", "vanilla_mtl", "macro_f1")]
    rlar_dice = next(c for c in levels.comparisons if (c.a, c.b, c.metric) == ("rlar", "vanilla_mtl", "dice"))
    assert rlar_dice.low < DICE_SHIFT["rlar"] < rlar_dice.high and rlar_dice.low > 0
    assert rlar_dice.n_patients == 60 and rlar_dice.n_runs == 3
    assert rlar_dice.p_wilcoxon < 0.001
    for c in levels.comparisons:
        assert c.p_wilcoxon_holm >= c.p_wilcoxon and c.p_nb_holm >= c.p_nb
    # the binary space derives low/high risk from the six-level probabilities: AUROC and F1 differ from levels
    assert tables[1].rows[0].cells["macro_f1"].mean != levels.rows[0].cells["macro_f1"].mean
    assert tables[1].rows[0].cells["dice"].mean == levels.rows[0].cells["dice"].mean


def test_table_mean_is_per_run_metric_mean(grid_dir: Path) -> None:
    grid = load_grid_data(grid_dir)
    table = build_tables(grid, n_resamples=50)[0]
    runs = grid.runs_of("rlar")
    dice = [pd.read_csv(r.path / "predictions_test.csv")["dice"].mean() for r in runs]
    assert table.rows[2].cells["dice"].mean == pytest.approx(sum(dice) / len(dice))
    assert frame_metrics(runs[0].frames["test"], "levels")["macro_f1"] >= 0


def test_runs_table_holds_the_values_behind_each_mean(grid_dir: Path, tmp_path: Path) -> None:
    grid = load_grid_data(grid_dir)
    runs = runs_table(grid)
    assert list(runs["arm"].unique()) == ["vanilla_mtl", "guided_mtl", "rlar"]  # grid order
    assert len(runs) == 3 * 3 * 2  # arms x folds x label spaces
    table = build_tables(grid, n_resamples=50)[0]
    levels = runs[(runs["space"] == "levels") & (runs["arm"] == "rlar")]
    assert levels["dice"].mean() == pytest.approx(table.rows[2].cells["dice"].mean)
    assert levels["macro_f1"].mean() == pytest.approx(table.rows[2].cells["macro_f1"].mean)
    written = write_report(grid_dir, tmp_path / "r", draw_figures=False, n_resamples=50)
    assert tmp_path / "r" / RUNS_FILE in written
    assert len(pd.read_csv(tmp_path / "r" / RUNS_FILE)) == len(runs)
    assert f"[{RUNS_FILE}]({RUNS_FILE})" in (tmp_path / "r" / "report.md").read_text()


def test_report_is_byte_for_byte_reproducible(grid_dir: Path, tmp_path: Path) -> None:
    first = write_report(grid_dir, tmp_path / "a", draw_figures=False, n_resamples=200)
    second = write_report(grid_dir, tmp_path / "b", draw_figures=False, n_resamples=200)
    names = sorted(p.name for p in first)
    assert names == sorted(p.name for p in second)
    assert {"report.md", RUNS_FILE, "main__test__levels.md", "main__test__levels.csv", "main__test__levels.tex",
            "main__test__levels_comparisons.csv", "main__test__binary.md"} <= set(names)
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    text = (tmp_path / "a" / "report.md").read_text()
    assert "Holm correction across the 6 comparisons" in text and "Nadeau-Bengio" in text
    assert "leave out the variation between trainings of one config" in text  # what the patient-level tests miss
    assert "| rlar - vanilla_mtl | Dice |" in text
    tex = (tmp_path / "a" / "main__test__levels.tex").read_text()
    assert tex.count(r"\begin{tabular}") == 2 and r"$\pm$" in tex


def test_cli_report_with_reference_and_figures(grid_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    assert main(["report", str(grid_dir), "--reference", "guided_mtl", "--out", str(out), "--format", "md",
                 "--no-overlays", "--bootstrap", "100"]) == 0
    printed = capsys.readouterr().out
    assert "rlar" in printed and "Dice" in printed
    text = (out / "main__test__levels.md").read_text()
    assert "| rlar - guided_mtl | Dice |" in text and "| vanilla_mtl - guided_mtl | Dice |" in text
    assert not list(out.glob("*.csv"))  # md only
    for name in ("learning_curves.png", "cosine.png", "confusion.png", "reliability.png", "forest.png"):
        assert (out / name).stat().st_size > 1000, name


def test_report_errors_name_the_problem(tmp_path: Path, grid_dir: Path) -> None:
    with pytest.raises(DataError, match="no finished run"):
        write_report(tmp_path)
    with pytest.raises(ConfigError, match="--reference"):
        build_tables(load_grid_data(grid_dir), reference="pcgrad")
    with pytest.raises(ConfigError, match="--format"):
        write_report(grid_dir, tmp_path / "x", formats=["html"])


def test_a_comparison_table_waits_for_both_sides(grid_dir: Path) -> None:
    from rlar.experiments.arms import TableSpec
    from rlar.reporting.collect import TEST
    from rlar.reporting.tables import build_table

    grid = load_grid_data(grid_dir)
    # an ablation whose arm has not run yet: only its reference has runs, so there is nothing to compare
    waiting = TableSpec("lambda_sweep", "sweep", ("rlar", "lambda_sweep-3"), (("lambda_sweep-3", "rlar"),))
    assert build_table(grid, waiting, TEST, "levels", n_resamples=20) is None
    listing = TableSpec("listing", "no comparisons asked", ("rlar", "lambda_sweep-3"))
    table = build_table(grid, listing, TEST, "levels", n_resamples=20)
    assert table is not None and [r.arm for r in table.rows] == ["rlar"]
    half = TableSpec("half", "one side of two", ("rlar", "vanilla_mtl", "x"), (("x", "rlar"), ("rlar", "vanilla_mtl")))
    table = build_table(grid, half, TEST, "levels", n_resamples=20)
    assert table is not None and {(c.a, c.b) for c in table.comparisons} == {("rlar", "vanilla_mtl")}
