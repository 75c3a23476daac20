"""The optional tasks' section of ``rlar report`` (the ACR descriptors, docs/descriptors.md): per arm, the mean and
standard deviation over its runs of each descriptor's macro-F1, one-vs-rest AUROC and labelled test images.

Computed from each run's ``predictions_test.csv`` (its ``<task>_label`` / ``<task>_prob_<class>`` columns) with the
evaluation's own :func:`rlar.evaluation.evaluate.task_metrics`, so the numbers are those of the runs' metrics.json.
Arms whose runs have no such columns are left out; a grid without any gives no section.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rlar.reporting.collect import GridData
from rlar.tasks import AUX_CLASSIFICATION_METRICS, TASKS

#: The report's file of this section.
DESCRIPTORS_FILE = "descriptors.csv"


def descriptor_table(grid: GridData, evaluation: str = "test") -> pd.DataFrame:
    """One row per (arm, optional task): ``n_runs`` and mean/std over runs of each metric of
    :data:`rlar.tasks.AUX_CLASSIFICATION_METRICS` (empty frame when no run has an optional task)."""
    from rlar.evaluation.evaluate import task_metrics

    rows = []
    for arm in grid.arms:
        per_run = [task_metrics(run.frames[evaluation]) for run in grid.runs_of(arm) if evaluation in run.frames]
        for name, spec in TASKS.items():
            scored = [m for m in per_run if spec.headline in m]
            if not spec.optional or not scored:
                continue
            row: dict[str, object] = {"arm": arm, "task": name, "n_runs": len(scored)}
            for key, suffix in zip(spec.metrics, AUX_CLASSIFICATION_METRICS):
                values = np.array([float(m[key]) for m in scored], dtype=np.float64)
                row[f"{suffix}_mean"] = float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
                row[f"{suffix}_std"] = float(np.nanstd(values, ddof=1)) if np.isfinite(values).sum() > 1 else math.nan
            rows.append(row)
    return pd.DataFrame(rows)


def _cell(mean: float, std: float, digits: int = 3) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if math.isfinite(std) else f"{mean:.{digits}f}"


def descriptor_section(table: pd.DataFrame) -> list[str]:
    """report.md lines of :func:`descriptor_table` (none when it is empty)."""
    if table.empty:
        return []
    lines = ["## ACR descriptors (optional tasks)", "",
             "Scored on the labelled test images of each run only (`n`: how many); AUROC one-vs-rest, averaged over "
             "the classes present; mean ± std over runs.", "",
             "| arm | descriptor | runs | macro-F1 | AUROC | n |", "|---|---|---|---|---|---|"]
    for row in table.itertuples(index=False):
        lines.append(f"| {row.arm} | {row.task} | {row.n_runs} | {_cell(row.macro_f1_mean, row.macro_f1_std)} | "
                     f"{_cell(row.auroc_mean, row.auroc_std)} | {_cell(row.n_mean, row.n_std, 0)} |")
    return [*lines, ""]


__all__ = ["DESCRIPTORS_FILE", "descriptor_section", "descriptor_table"]
