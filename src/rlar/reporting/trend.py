"""Does one method gain on another as the readers disagree more? The slope of their difference across the
annotator study's levels.

The annotator study (rlar.experiments.readers) trains every method on labels of growing disagreement, levels
L0..L4, and scores every run against the phantom's truth. "RLAR helps more when readers disagree more" is a claim
about how the difference ``D_L = metric(A at level L) - metric(B at level L)`` changes with L, not about any one
level, so it is tested on the slope:

- ``D_L`` is computed as a comparison's difference (rlar.reporting.hierarchical): Dice the mean over the test
  images, pooled over folds and seeds; macro-F1 over the labelled images, pooled likewise;
- the slope is the least-squares line of ``D_L`` on the level's index (0, 1, 2, ...): the change of the difference
  per level step; positive means A gains on B as disagreement grows;
- its interval is a two-stage bootstrap, patients then seeds. Every level is scored on the same test images (one
  split serves the grid), so one patient draw per replicate serves every level and both methods: the levels are
  paired as the two arms of a comparison are. Seeds are drawn independently for every (level, method) and fold.
  Unlike :func:`rlar.reporting.hierarchical.hierarchical_comparison` the seed draw is not rescaled for the test
  noise it repeats, so with several seeds the interval errs on the wide side; with one seed per arm it is the
  patient bootstrap and leaves out the spread between trainings;
- ``p`` is the two-sided bootstrap p-value of a zero slope: twice the smaller share of replicates on either side of
  0, at least ``1 / n_resamples``;
- the minimum detectable slope (80 % power, two-sided alpha 0.05) is ``Z_MDE`` times the bootstrap replicates'
  standard deviation; with one seed per arm it leaves out retraining, so it is a lower bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rlar.reporting.collect import GridData, RunRecord
from rlar.reporting.hierarchical import Z_MDE, aligned_values, common_frames

#: The metrics of the annotator study's figure and trend (macro-F1 on the study's own level scale).
TREND_METRICS: tuple[str, ...] = ("dice", "macro_f1")
#: Run frame key -> the name the annotator study gives that evaluation: the test frame is scored against the
#: readers the run trained on, the truth frame against the phantom's truth.
ANNOTATOR_EVALUATIONS: dict[str, str] = {"truth": "truth", "test": "readers"}


@dataclass(frozen=True)
class LevelTrend:
    """The slope of ``metric(A) - metric(B)`` over the levels, with its bootstrap interval (module docstring)."""

    levels: tuple[str, ...]
    #: ``D_L`` per level, in level order.
    differences: tuple[float, ...]
    slope: float
    low: float
    high: float
    p_value: float
    #: The smallest slope the design detects at 80 % power (a lower bound with one seed per arm).
    mde: float
    #: The fewest seeds of A (B) at any level and fold: 1 means the interval leaves out retraining.
    seeds_a: int
    seeds_b: int
    n_patients: int
    n_folds: int


def _slope(differences: np.ndarray) -> np.ndarray:
    """Least-squares slope of the last axis of ``differences`` on 0, 1, ..., L-1."""
    x = np.arange(differences.shape[-1], dtype=np.float64)
    x -= x.mean()
    return np.asarray(differences @ x / (x @ x))


def level_trend(levels: Sequence[tuple[str, Sequence[RunRecord], Sequence[RunRecord]]], key: str, metric: str,
                space: str = "levels", n_resamples: int = 2000, seed: int = 0,
                confidence: float = 0.95) -> LevelTrend | None:
    """The trend of A - B over ``levels``: ``(level name, runs of A, runs of B)`` in level order, each run scored in
    its ``key`` frame (``truth`` or ``test``). Only folds where every level has runs of both count. None when fewer
    than two levels, no common fold or image, or the metric is undefined for these runs."""
    if len(levels) < 2:
        return None
    groups = [list(runs) for _, runs_a, runs_b in levels for runs in (runs_a, runs_b)]
    folds = sorted(set.intersection(*({r.fold for r in runs if key in r.frames} for runs in groups)))
    rng = np.random.default_rng(seed)
    prepared = []
    for fold in folds:
        members = [sorted((r for r in runs if r.fold == fold and key in r.frames), key=lambda r: r.seed)
                   for runs in groups]
        frames = common_frames([r for group in members for r in group], key)
        if frames[0].empty:
            continue
        # Each level has its own labels (a level's readers differ from another's): align every group on its own.
        parts, start = [], 0
        for group in members:
            aligned = aligned_values(frames[start:start + len(group)], metric, space)
            if aligned is None:
                return None
            parts.append(aligned)
            start += len(group)
        keep = np.logical_and.reduce([part[2] for part in parts])
        if not keep.any():
            continue
        patients = frames[0]["patient_id"].astype(str).to_numpy()[keep]
        uniq, index = np.unique(patients, return_inverse=True)
        prepared.append(([part[0][:, keep] for part in parts],
                         [None if part[1] is None else part[1][keep] for part in parts], index, uniq.size,
                         [len(group) for group in members], parts[0][3]))
    if not prepared:
        return None
    # Patients first (one draw per fold for every level and method), then the seeds of each group in order.
    weights = [rng.multinomial(p, np.full(p, 1.0 / p), size=n_resamples).astype(np.float64)[:, index]
               for _, _, index, p, _, _ in prepared]
    n_groups = len(groups)
    full: list[np.ndarray | float] = [0.0] * n_groups
    boot: list[np.ndarray | float] = [0.0] * n_groups
    for (values, labels, _, _, sizes, kernel), w in zip(prepared, weights):
        ones = np.ones((1, w.shape[1]))
        for g, size in enumerate(sizes):
            draw = rng.multinomial(size, np.full(size, 1.0 / size), size=n_resamples).astype(np.float64)
            full[g] = full[g] + kernel.stats(values[g], labels[g], ones)[:, 0].sum(axis=0)  # (q,)
            boot[g] = boot[g] + np.einsum("rs,srq->rq", draw, kernel.stats(values[g], labels[g], w))  # (R, q)
    kernel = prepared[0][5]
    metric_full = np.array([kernel.finish(np.asarray(t)) for t in full])  # (2L,)
    metric_boot = np.stack([kernel.finish(np.asarray(t)) for t in boot], axis=-1)  # (R, 2L)
    differences = metric_full[0::2] - metric_full[1::2]
    slopes = _slope(metric_boot[:, 0::2] - metric_boot[:, 1::2])
    slopes = slopes[np.isfinite(slopes)]
    nan = math.nan
    alpha = (1.0 - confidence) / 2.0
    if slopes.size >= max(2, n_resamples // 2) and np.all(np.isfinite(differences)):
        low, high = (float(x) for x in np.quantile(slopes, [alpha, 1.0 - alpha]))
        tail = min(float(np.mean(slopes <= 0)), float(np.mean(slopes >= 0)))
        p_value = min(1.0, max(2.0 * tail, 1.0 / n_resamples))
        mde = Z_MDE * float(slopes.std(ddof=1))
    else:
        low = high = p_value = mde = nan
    seeds = np.array([entry[4] for entry in prepared])  # (folds, 2L)
    return LevelTrend(levels=tuple(name for name, _, _ in levels), differences=tuple(float(d) for d in differences),
                      slope=float(_slope(differences)), low=low, high=high, p_value=p_value, mde=mde,
                      seeds_a=int(seeds[:, 0::2].min()), seeds_b=int(seeds[:, 1::2].min()),
                      n_patients=int(sum(entry[3] for entry in prepared)), n_folds=len(prepared))


def annotator_pairs(grid: GridData) -> list[tuple[str, str]]:
    """The method pairs (a, b) the grid's per-level tables compare, in first-seen order (``a - b``)."""
    pairs: list[tuple[str, str]] = []
    for spec in grid.tables:
        for a, b in spec.comparisons:
            arm_a, arm_b = grid.arms.get(a), grid.arms.get(b)
            if arm_a is None or arm_b is None or "level" not in arm_a.meta or "level" not in arm_b.meta:
                continue
            pair = (arm_a.meta.get("method", arm_a.method), arm_b.meta.get("method", arm_b.method))
            if pair not in pairs:
                pairs.append(pair)
    return pairs


def annotator_trends(grid: GridData, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per method pair, evaluation (``truth``, ``readers``) and metric: the per-level differences and the
    slope with its interval (:func:`level_trend`). Empty for a grid without annotator levels."""
    by_level: dict[tuple[int, str], str] = {}
    names: dict[int, str] = {}
    for arm in grid.arms.values():
        if "level" in arm.meta:
            index = int(arm.meta.get("level_index", 0))
            by_level[(index, arm.meta.get("method", arm.method))] = arm.name
            names[index] = str(arm.meta["level"])
    rows = []
    for a, b in annotator_pairs(grid):
        indices = [i for i in sorted(names) if (i, a) in by_level and (i, b) in by_level]
        levels = [(names[i], grid.runs_of(by_level[(i, a)]), grid.runs_of(by_level[(i, b)])) for i in indices]
        for key, evaluation in ANNOTATOR_EVALUATIONS.items():
            for metric in TREND_METRICS:
                trend = level_trend(levels, key, metric, n_resamples=n_resamples, seed=seed)
                if trend is None:
                    continue
                rows.append({"a": a, "b": b, "evaluation": evaluation, "metric": metric,
                             "levels": ";".join(trend.levels),
                             "differences": ";".join(f"{d:.6f}" for d in trend.differences),
                             "slope": trend.slope, "ci_low": trend.low, "ci_high": trend.high,
                             "p_bootstrap": trend.p_value, "mde": trend.mde, "seeds_a": trend.seeds_a, "seeds_b": trend.seeds_b,
                             "patients": trend.n_patients, "folds": trend.n_folds})
    return pd.DataFrame(rows, columns=["a", "b", "evaluation", "metric", "levels", "differences", "slope", "ci_low",
                                       "ci_high", "p_bootstrap", "mde", "seeds_a", "seeds_b", "patients", "folds"])


def trend_section(trends: pd.DataFrame, csv_name: str | None) -> list[str]:
    """report.md lines for :func:`annotator_trends` (none when empty); ``csv_name`` links the numbers."""
    if trends.empty:
        return []
    levels = trends.iloc[0]["levels"].split(";")
    lines = ["## Does the difference grow with disagreement?", "",
             "Slope of A - B per level step (least squares over the levels), 95 % bootstrap interval over patients "
             "and seeds (the same patients at every level), two-sided bootstrap p of a zero slope; a positive slope "
             "means A gains on B as the readers disagree more. MDE: the smallest slope detected at 80 % power. Seeds 1 "
             "(either side): the interval and MDE leave out the spread between trainings (the MDE is a lower bound).",
             "",
             "| A - B | against | metric | " + " | ".join(levels) + " | slope per level [95 % CI] | p | MDE | seeds a/b |",
             "|---|---|---|" + "---|" * len(levels) + "---|---|---|---|"]
    for row in trends.itertuples(index=False):
        cells = [f"{float(d):+.3f}" for d in str(row.differences).split(";")]
        cells += [""] * (len(levels) - len(cells))
        interval = f"{row.slope:+.4f} [{row.ci_low:+.4f}, {row.ci_high:+.4f}]"
        p = "n/a" if not math.isfinite(row.p_bootstrap) else (
            "<0.001" if row.p_bootstrap < 0.001 else f"{row.p_bootstrap:.3f}")
        metric = "Dice" if row.metric == "dice" else "macro-F1"
        lines.append(f"| {row.a} - {row.b} | {row.evaluation} | {metric} | " + " | ".join(cells)
                     + f" | {interval} | {p} | {row.mde:.4f} | {row.seeds_a}/{row.seeds_b} |")
    if csv_name:
        lines += ["", f"The numbers: [{csv_name}]({csv_name})."]
    return [*lines, ""]


__all__ = ["ANNOTATOR_EVALUATIONS", "TREND_METRICS", "LevelTrend", "annotator_pairs", "annotator_trends",
           "level_trend", "trend_section"]
