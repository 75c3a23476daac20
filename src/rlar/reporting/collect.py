"""Read a grid folder written by ``rlar experiment``: its tables (``grid.json``), runs and per-image predictions.

Layout (each run folder as docs/interfaces.md describes it)::

    <root>/grid.json, splits.json
    <root>/<arm>/seed<k>/fold<j>/{config.yaml, log.csv, metrics.json, predictions_test.csv, checkpoints/ ...}
                                 truth/predictions.csv                (annotator study: scored against the truth)
                                 external/<name>/predictions.csv      (+ nodule_predictions.csv for cine sources)

A folder without ``grid.json`` (runs laid out the same way by hand) is read too: its arms are the folders that
hold runs, shown in one table. Nothing here trains or imports torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from rlar.errors import DataError
from rlar.experiments.arms import Arm, TableSpec
from rlar.reporting.environments import NOT_RECORDED, environment_id, numeric_environment
from rlar.runs import (
    EVAL_PREDICTIONS_FILE,
    EXTERNAL_DIR,
    GRID_FILE,
    GRID_SPLITS,
    LOG_FILE,
    METRICS_FILE,
    NODULE_PREDICTIONS_FILE,
    PREDICTIONS_FILE,
    SPLITS_FILE,
    TRUTH_DIR,
    find_grid_runs,
)


@dataclass(frozen=True)
class Evaluation:
    """Which predictions of a run a table is computed on: the internal test fold, the phantom truth, or an
    external source (frames or nodules)."""

    key: str
    title: str
    relpath: str


TEST = Evaluation("test", "test folds (labels as annotated)", PREDICTIONS_FILE)
TRUTH = Evaluation("truth", "test folds scored against the phantom's true masks and levels",
                   f"{TRUTH_DIR}/{EVAL_PREDICTIONS_FILE}")


@dataclass
class RunRecord:
    """One finished run: where it is, its test-fold sizes and the prediction frames found in it."""

    arm: str
    seed: int
    fold: int
    path: Path
    n_train: int | None = None
    n_test: int | None = None
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    log: pd.DataFrame | None = None
    #: The numeric part of the run's recorded environment (rlar.reporting.environments); None: not recorded.
    environment: dict[str, Any] | None = None
    #: Metrics already computed from ``frames`` ((evaluation, label space) -> metrics); sklearn is slow enough to
    #: matter when every comparison needs every run's metrics.
    metrics_cache: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)

    @property
    def environment_name(self) -> str:
        """Short name of the environment that trained this run, or ``"not recorded"``."""
        return environment_id(self.environment) if self.environment is not None else NOT_RECORDED


@dataclass
class GridData:
    """Everything the report needs from a grid folder."""

    root: Path
    arms: dict[str, Arm]
    tables: list[TableSpec]
    runs: list[RunRecord]
    evaluations: list[Evaluation]
    extra: dict[str, Any] = field(default_factory=dict)

    def runs_of(self, arm: str) -> list[RunRecord]:
        return sorted((r for r in self.runs if r.arm == arm), key=lambda r: (r.seed, r.fold))


def _fold_sizes(splits: Any, fold: int) -> tuple[int | None, int | None]:
    """(n_train, n_test) of one fold: outer training set (train + val) and test set; legacy files: train / val."""
    try:
        entry = splits[fold]
    except (IndexError, KeyError, TypeError):
        return None, None
    if entry.get("test"):
        return len(entry.get("train", [])) + len(entry.get("val", [])), len(entry["test"])
    return len(entry.get("train", [])), len(entry.get("val", []))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def find_runs(root: Path) -> list[tuple[str, int, int, Path]]:
    """(arm, seed, fold, path) of every run folder with a metrics.json, sorted (:func:`rlar.runs.find_grid_runs`)."""
    return find_grid_runs(root)


def _external_evaluations(paths: list[Path]) -> list[Evaluation]:
    names: set[tuple[str, str]] = set()
    for path in paths:
        external = path / EXTERNAL_DIR
        if external.is_dir():
            for sub in external.iterdir():
                for file in (EVAL_PREDICTIONS_FILE, NODULE_PREDICTIONS_FILE):
                    if (sub / file).is_file():
                        names.add((sub.name, file))
    out = []
    for name, file in sorted(names):
        nodules = file == NODULE_PREDICTIONS_FILE
        out.append(Evaluation(f"external-{name}" + ("-nodules" if nodules else ""),
                              f"external source {name}" + (", nodule level (mean of frame probabilities)" if nodules
                                                           else ", frame level" if any(
                                                               n == name and f == NODULE_PREDICTIONS_FILE
                                                               for n, f in names) else ""),
                              f"{EXTERNAL_DIR}/{name}/{file}"))
    return out


#: Columns read as text: ids, and level names such as "2" or "4a" that pandas would otherwise guess as numbers.
_TEXT_COLUMNS = ("image_id", "patient_id", "label_name", "pred_name", "clip_id")


def read_predictions(path: Path) -> pd.DataFrame:
    """A per-image predictions CSV with ids and level names as text (unknown label name = "")."""
    frame = pd.read_csv(path, dtype=dict.fromkeys(_TEXT_COLUMNS, str))
    for column in _TEXT_COLUMNS:
        if column in frame.columns:
            frame[column] = frame[column].fillna("")
    return frame


def load_grid_data(root: str | Path) -> GridData:
    """Read a grid folder (see the module docstring). Raises DataError when it holds no finished run."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "is not a folder")
    found = find_runs(root)
    if not found:
        raise DataError(root, f"holds no finished run (<arm>/seed<k>/fold<j>/{METRICS_FILE}); run `rlar experiment` first")
    grid = _read_json(root / GRID_FILE)
    if grid is not None:
        arms = {a["name"]: Arm.from_dict(a) for a in grid["arms"]}
        tables = [TableSpec.from_dict(t) for t in grid["tables"]]
        extra = {"grid": grid.get("grid", {}), "folds": grid.get("folds"), "seeds": grid.get("seeds")}
    else:
        names = sorted({arm for arm, *_ in found})
        arms = {n: Arm(n, n) for n in names}
        tables = [TableSpec("main", f"All runs in {root.name}", tuple(names))]
        extra = {}
    root_splits = _read_json(root / GRID_SPLITS)
    runs = []
    for arm, seed, fold, path in found:
        splits = root_splits if root_splits is not None else _read_json(path / SPLITS_FILE)
        n_train, n_test = _fold_sizes(splits, fold)
        metrics = _read_json(path / METRICS_FILE)
        run_info = metrics.get("run") if isinstance(metrics, dict) else None
        environment = numeric_environment(run_info.get("environment") if isinstance(run_info, dict) else None)
        record = RunRecord(arm, seed, fold, path, n_train, n_test, environment=environment)
        log_path = path / LOG_FILE
        if log_path.is_file():
            try:
                record.log = pd.read_csv(log_path).apply(pd.to_numeric, errors="coerce")
            except (pd.errors.ParserError, pd.errors.EmptyDataError):
                record.log = None
        runs.append(record)
    evaluations = [TEST, TRUTH, *_external_evaluations([r.path for r in runs])]
    for record in runs:
        for ev in evaluations:
            file = record.path / ev.relpath
            if file.is_file():
                record.frames[ev.key] = read_predictions(file)
    used = [ev for ev in evaluations if any(ev.key in r.frames for r in runs)]
    return GridData(root, arms, tables, runs, used, extra)


__all__ = ["TEST", "TRUTH", "Evaluation", "GridData", "RunRecord", "find_runs", "load_grid_data", "read_predictions"]
