"""Per-epoch CSV log and TensorBoard scalars of a training run (written by rank 0 only).

The CSV is rewritten whole after each epoch from the in-memory history: columns appear when first used
(validation metrics exist only on validation epochs), and a resumed run drops rows past its checkpoint, so the
file always matches the weights on disk.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

# The file names live in rlar.runs (the run-folder layout).
from rlar.runs import COMPETITION_FILE, LOG_FILE, TENSORBOARD_DIR

FIRST_COLUMNS = ("epoch", "global_step", "lr", "total", "cosine")
#: The statistics' columns of the task-competition probe's per-layer log (rlar.training.competition;
#: ``competition.csv``, :data:`rlar.runs.COMPETITION_FILE`), after ``epoch`` and ``layer``.
COMPETITION_STATS = ("n", "cos_mean", "cos_q10", "cos_q50", "cos_q90", "abs_cos_mean", "chan_cos_mean",
                     "chan_abs_cos_mean", "log10_norm_ratio")


def flatten_scalars(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a (nested) metrics dict as ``{"prefix" + "a/b": float}``; lists and strings are skipped."""
    out: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_scalars(value, prefix=f"{name}/"))
        elif isinstance(value, bool | int | float):
            out[name] = float(value)
        elif hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalars
            out[name] = float(value.item())
    return out


class RunLogger:
    """Collects one row per epoch; writes ``log.csv`` and TensorBoard events under ``out_dir``.

    ``enabled=False`` (non-zero ranks) keeps the history in memory but writes nothing.
    """

    def __init__(self, out_dir: str | Path, enabled: bool = True, history: list[dict[str, Any]] | None = None,
                 global_step: int = 0) -> None:
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.history: list[dict[str, Any]] = list(history or [])
        self._writer = None
        if enabled:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a killed run wrote after its last checkpoint, so curves do not fork.
            self._writer = SummaryWriter(str(self.out_dir / TENSORBOARD_DIR), purge_step=global_step or None)

    @property
    def csv_path(self) -> Path:
        return self.out_dir / LOG_FILE

    def log_step(self, step: int, scalars: Mapping[str, float | None]) -> None:
        """Per-step training scalars (TensorBoard only, tag prefix ``step/``)."""
        if self._writer is None:
            return
        for key, value in scalars.items():
            if value is not None and math.isfinite(value):
                self._writer.add_scalar(f"step/{key}", value, step)

    def log_epoch(self, row: dict[str, Any]) -> None:
        """Append one epoch row (``epoch`` required) and rewrite the CSV; same scalars go to TensorBoard."""
        self.history = [r for r in self.history if r["epoch"] < row["epoch"]] + [dict(row)]
        if not self.enabled:
            return
        self._write_csv()
        assert self._writer is not None
        for key, value in row.items():
            if key in ("epoch",) or not isinstance(value, int | float) or value is None:
                continue
            if math.isfinite(float(value)):
                self._writer.add_scalar(f"epoch/{key}", float(value), row["epoch"])
        self._writer.flush()

    def _write_csv(self) -> None:
        frame = pd.DataFrame(self.history)
        first = [c for c in FIRST_COLUMNS if c in frame.columns]
        frame = frame[first + [c for c in frame.columns if c not in first]]
        tmp = self.csv_path.with_suffix(".csv.tmp")
        frame.to_csv(tmp, index=False)
        os.replace(tmp, self.csv_path)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


__all__ = ["COMPETITION_FILE", "COMPETITION_STATS", "FIRST_COLUMNS", "LOG_FILE", "RunLogger", "flatten_scalars"]
