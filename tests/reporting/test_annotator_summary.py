"""The annotator study's summary (annotator.csv) and figure, from hand-made per-run points."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rlar.reporting.figures import annotator_figure, annotator_summary


def _points() -> pd.DataFrame:
    rows = []
    for index, level in enumerate(["L0-truth", "L4-severe"]):
        for method, values in (("vanilla_mtl", [0.8, 0.7, 0.9]), ("rlar", [0.6, 0.6, 0.6])):
            for value in values:
                rows.append({"level": level, "level_index": index, "method": method, "evaluation": "truth",
                             "metric": "dice", "value": value - 0.1 * index})
    rows.append({"level": "L4-severe", "level_index": 1, "method": "rlar", "evaluation": "truth",
                 "metric": "macro_f1", "value": 0.3})
    return pd.DataFrame(rows)


def test_summary_is_the_mean_and_t_interval_over_runs() -> None:
    summary = annotator_summary(_points())
    row = summary.query("level == 'L4-severe' and method == 'vanilla_mtl' and metric == 'dice'").iloc[0]
    values = np.array([0.7, 0.6, 0.8])
    half = stats.t.ppf(0.975, 2) * values.std(ddof=1) / np.sqrt(3)
    assert row["n_runs"] == 3 and row["mean"] == pytest.approx(0.7)
    assert (row["ci95_low"], row["ci95_high"]) == pytest.approx((0.7 - half, 0.7 + half))
    constant = summary.query("level == 'L0-truth' and method == 'rlar'").iloc[0]
    assert constant["ci95_low"] == pytest.approx(constant["ci95_high"])  # no spread: a zero-width interval
    single = summary.query("metric == 'macro_f1'").iloc[0]
    assert single["n_runs"] == 1 and np.isnan(single["ci95_low"])  # one run has no interval
    assert list(summary.drop_duplicates("level")["level"]) == ["L0-truth", "L4-severe"]


def test_figure_draws_one_panel_per_evaluation_and_metric() -> None:
    noise = {"L0-truth": {"mask_dice_vs_truth": 1.0, "grade_error_rate": 0.0},
             "L4-severe": {"mask_dice_vs_truth": 0.79, "grade_error_rate": 0.43}}
    fig = annotator_figure(_points(), noise)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.has_data()]
    assert len(panels) == 2
    assert [t.get_text() for t in panels[0].get_xticklabels()][1] == "L4-severe\nDice 0.79\nerr 0.43"
