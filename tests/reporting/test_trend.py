"""The annotator study's trend test (rlar.reporting.trend): the slope of a method difference across the levels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from rlar.experiments.arms import Arm, TableSpec
from rlar.reporting.collect import TEST, TRUTH, GridData, RunRecord
from rlar.reporting.report import ANNOTATOR_TREND_FILE, make_report
from rlar.reporting.trend import annotator_trends, level_trend

CLASSES = ["TR1", "TR2", "TR3", "TR4", "TR5"]
N = 60


def _frame(dice: np.ndarray, pred: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    probs = np.full((N, len(CLASSES)), 0.1)
    probs[np.arange(N), pred] = 0.6
    frame = pd.DataFrame({"image_id": [f"p{i:02d}_0" for i in range(N)], "patient_id": [f"p{i:02d}" for i in range(N)],
                          "has_mask": True, "dice": dice, "iou": dice / (2 - dice),
                          "hd95_px": 10 * (1 - dice), "label": labels, "label_name": [CLASSES[y] for y in labels],
                          "pred": pred, "pred_name": [CLASSES[p] for p in pred]})
    for k, name in enumerate(CLASSES):
        frame[f"prob_{name}"] = probs[:, k]
    return frame


def _study(gain_per_level: float, n_levels: int = 4, seeds: int = 1, seed: int = 0
           ) -> tuple[list[tuple[str, list[RunRecord], list[RunRecord]]], dict[str, np.ndarray]]:
    """Levels of runs of ``a`` and ``b`` on the same 60 patients: a's Dice gains ``gain_per_level`` per level on
    b's; readers' labels at level L are the truth shifted by one class on the first 5 L patients; a predicts the
    level's readers' labels, b the truth."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.6, 0.9, N)
    truth = rng.integers(0, len(CLASSES), N)
    levels, readers = [], {}
    for level in range(n_levels):
        read = truth.copy()
        read[: 5 * level] = (read[: 5 * level] + 1) % len(CLASSES)
        readers[f"L{level}"] = read
        pair: list[list[RunRecord]] = [[], []]
        for side, gain in enumerate((gain_per_level * level, 0.0)):
            for s in range(seeds):
                dice = np.clip(base + gain + rng.normal(0, 0.01, N), 0, 1)
                pred = read if side == 0 else truth
                frames = {"test": _frame(dice, pred, read), "truth": _frame(dice, pred, truth)}
                pair[side].append(RunRecord(f"{'ab'[side]}-L{level}", s, 0, Path("."), frames=frames))
        levels.append((f"L{level}", pair[0], pair[1]))
    return levels, readers


def _dice(runs: list[RunRecord]) -> float:
    return float(np.mean(np.concatenate([r.frames["truth"]["dice"].to_numpy() for r in runs])))


def test_the_slope_is_the_least_squares_line_of_the_level_differences() -> None:
    levels, _ = _study(gain_per_level=0.02, seeds=2)
    trend = level_trend(levels, "truth", "dice", n_resamples=400, seed=1)
    assert trend is not None and trend.levels == ("L0", "L1", "L2", "L3")
    by_hand = [_dice(a) - _dice(b) for _, a, b in levels]
    assert trend.differences == pytest.approx(by_hand)
    assert trend.slope == pytest.approx(np.polyfit(np.arange(4), by_hand, 1)[0])
    assert trend.slope == pytest.approx(0.02, abs=0.005)
    assert trend.low > 0 and trend.p_value < 0.01  # a built-in gain is found
    # the MDE is 2.8 bootstrap SEs, about 2.8 / (2 * 1.96) of the interval's width
    assert trend.mde == pytest.approx(2.8016 * (trend.high - trend.low) / (2 * 1.96), rel=0.25)
    assert (trend.seeds_a, trend.seeds_b, trend.n_patients, trend.n_folds) == (2, 2, N, 1)


def test_no_gain_gives_an_interval_around_zero() -> None:
    levels, _ = _study(gain_per_level=0.0, seed=3)
    trend = level_trend(levels, "truth", "dice", n_resamples=400, seed=1)
    assert trend is not None and trend.low < 0 < trend.high and trend.p_value > 0.05


def test_each_level_scores_against_its_own_labels() -> None:
    levels, readers = _study(gain_per_level=0.0)
    on_readers = level_trend(levels, "test", "macro_f1", n_resamples=200)
    on_truth = level_trend(levels, "truth", "macro_f1", n_resamples=200)
    assert on_readers is not None and on_truth is not None
    level = "L3"
    truth = levels[0][2][0].frames["truth"]["label"].to_numpy()
    # against its readers, a (which predicts them) is perfect and b (the truth) is not, and vice versa
    expected_readers = 1.0 - f1_score(readers[level], truth, average="macro")
    expected_truth = f1_score(truth, readers[level], average="macro") - 1.0
    assert on_readers.differences[3] == pytest.approx(expected_readers)
    assert on_truth.differences[3] == pytest.approx(expected_truth)
    assert on_readers.differences[0] == on_truth.differences[0] == 0.0  # L0: the readers are the truth
    assert on_readers.slope > 0 > on_truth.slope


def test_one_level_or_no_common_fold_has_no_trend() -> None:
    levels, _ = _study(gain_per_level=0.01)
    assert level_trend(levels[:1], "truth", "dice") is None
    moved = [(name, [RunRecord(r.arm, r.seed, 1, r.path, frames=r.frames) for r in a], b) if name == "L2"
             else (name, a, b) for name, a, b in levels]
    assert level_trend(moved, "truth", "dice") is None


def _annotator_grid(levels: list[tuple[str, list[RunRecord], list[RunRecord]]]) -> GridData:
    arms, tables, runs = {}, [], []
    for index, (name, runs_a, runs_b) in enumerate(levels):
        pair = []
        for method, level_runs in (("rlar", runs_a), ("vanilla_mtl", runs_b)):
            arm = f"annot-{name}-{method}"
            arms[arm] = Arm(arm, method, meta={"level": name, "level_index": index, "method": method})
            runs += [RunRecord(arm, r.seed, r.fold, r.path, frames=r.frames) for r in level_runs]
            pair.append(arm)
        tables.append(TableSpec(f"annotator-{name}", name, tuple(pair), ((pair[0], pair[1]),)))
    return GridData(Path("."), arms, tables, runs, [TEST, TRUTH])


def test_annotator_trends_names_the_methods_and_both_evaluations() -> None:
    levels, _ = _study(gain_per_level=0.02)
    trends = annotator_trends(_annotator_grid(levels), n_resamples=200)
    assert set(zip(trends["a"], trends["b"])) == {("rlar", "vanilla_mtl")}
    assert sorted(zip(trends["evaluation"], trends["metric"])) == [
        ("readers", "dice"), ("readers", "macro_f1"), ("truth", "dice"), ("truth", "macro_f1")]
    row = trends.query("evaluation == 'truth' and metric == 'dice'").iloc[0]
    assert row["levels"] == "L0;L1;L2;L3" and row["slope"] == pytest.approx(0.02, abs=0.005)


def test_the_report_writes_the_trend_table(tmp_path: Path) -> None:
    levels, _ = _study(gain_per_level=0.02)
    grid = _annotator_grid(levels)
    root = tmp_path / "grid"
    for run in grid.runs:
        folder = root / run.arm / f"seed{run.seed}" / f"fold{run.fold}"
        (folder / "truth").mkdir(parents=True)
        run.frames["test"].to_csv(folder / "predictions_test.csv", index=False)
        run.frames["truth"].to_csv(folder / "truth" / "predictions.csv", index=False)
        (folder / "metrics.json").write_text(json.dumps({"test": {}, "val": {}}))
    (root / "grid.json").write_text(json.dumps({"arms": [a.to_dict() for a in grid.arms.values()],
                                                "tables": [t.to_dict() for t in grid.tables], "folds": [0],
                                                "seeds": [0], "n_folds": 1}))
    (root / "splits.json").write_text(json.dumps([{"train": [], "val": [], "test": list(levels[0][1][0].frames[
        "test"]["image_id"])}]))
    make_report(root, tmp_path / "report", draw_figures=False, n_resamples=200)
    trends = pd.read_csv(tmp_path / "report" / ANNOTATOR_TREND_FILE)
    assert len(trends) == 4 and set(trends["a"]) == {"rlar"}
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Does the difference grow with disagreement?" in text
    row = next(line for line in text.splitlines() if line.startswith("| rlar - vanilla_mtl | truth | Dice |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert [abs(float(c)) < 0.01 for c in cells[3:7]] == [True, False, False, False]  # the gain grows by level
    assert cells[-1] == "1/1" and float(cells[-2]) > 0  # seeds, then the MDE
