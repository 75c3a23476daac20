"""The layout of run folders and grids, in one place (torch-free, beside :mod:`rlar.tasks`).

Every layer that writes or reads a run folder names its files and finds its folds through this module, as
nnU-Net names ``fold_<k>`` and ``checkpoint_final.pth`` in one place::

    <run>/config.yaml               the resolved config (reloadable with ``rlar train --config``)
    <run>/splits.json               every fold's train / val / test image ids
    <run>/log.csv, tensorboard/     one row per epoch; TensorBoard events
    <run>/competition.csv           the per-layer task-competition probe (two-task runs)
    <run>/metrics.json              test, val and run (written last: a run with it is finished)
    <run>/predictions_test.csv      one row per test image
    <run>/checkpoints/best.pt       best inner-validation score (what is reported and predicted with)
    <run>/checkpoints/last.pt       the last epoch (resume)
    <run>/curves.png                training curves (``rlar train``)

Folders of several runs:

- ``rlar train --fold all``: ``<out>/fold_<k>/`` (:func:`train_fold_dir`) and ``<out>/summary.json``;
- ``rlar experiment``: ``<grid>/<arm>/seed<k>/fold<j>/`` (:func:`grid_run_dir`, :func:`find_grid_runs`), one
  ``<grid>/splits.json`` and ``<grid>/grid.json``; a grid run may also hold ``error.txt`` (the traceback of a
  failed run), ``truth/predictions.csv`` (annotator study) and ``external/<name>/predictions.csv`` (+
  ``nodule_predictions.csv`` for cine sources).

The names are constants here (``METRICS_FILE``, ``CHECKPOINT_DIR`` ...); no other module spells them
(tests/test_run_layout_names.py checks it).

:func:`find_runs` turns any of these (a run, a ``fold_*`` folder, a grid arm ``<grid>/<arm>`` or one of its seeds
``<grid>/<arm>/seed<k>``) into the list of runs to ensemble.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlar.errors import DataError

CONFIG_FILE = "config.yaml"
SPLITS_FILE = "splits.json"
LOG_FILE = "log.csv"
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions_test.csv"
CHECKPOINT_DIR = "checkpoints"
BEST = "best.pt"
LAST = "last.pt"
#: Checkpoint file names looked for inside a run folder, in order of preference.
CHECKPOINT_NAMES: tuple[str, ...] = (BEST, LAST)
TENSORBOARD_DIR = "tensorboard"
#: The task-competition probe's per-layer log (rlar.training.competition).
COMPETITION_FILE = "competition.csv"
CURVES_FILE = "curves.png"
#: ``rlar train --fold all``: mean and std over the folds, beside the ``fold_<k>`` folders.
SUMMARY_FILE = "summary.json"
#: A grid run that raised: its traceback.
ERROR_FILE = "error.txt"
#: A grid's description (arms, tables, folds, seeds) and its one split file, at the grid root.
GRID_FILE = "grid.json"
GRID_SPLITS = SPLITS_FILE
#: Inside a grid run: scores against the phantom's truth, and one subfolder per external source.
TRUTH_DIR = "truth"
EXTERNAL_DIR = "external"
#: Per-image (and, for cine sources, per-nodule) predictions inside ``truth/`` and ``external/<name>/``.
EVAL_PREDICTIONS_FILE = "predictions.csv"
NODULE_PREDICTIONS_FILE = "nodule_predictions.csv"

_TRAIN_FOLD = re.compile(r"^fold_(\d+)$")  # rlar train --fold all
_GRID_FOLD = re.compile(r"^fold(\d+)$")  # rlar experiment
_GRID_SEED = re.compile(r"^seed(-?\d+)$")


def train_fold_dir(out: str | Path, fold: int) -> Path:
    """The run folder of fold ``fold`` under ``rlar train --fold all``'s ``--out``."""
    return Path(out) / f"fold_{int(fold)}"


def grid_run_rel(arm: str, seed: int, fold: int) -> Path:
    """The run folder of one arm, seed and fold relative to its grid folder (``<arm>/seed<k>/fold<j>``)."""
    return Path(arm) / f"seed{int(seed)}" / f"fold{int(fold)}"


def grid_run_dir(grid: str | Path, arm: str, seed: int, fold: int) -> Path:
    """The run folder of one arm, seed and fold of a grid written by ``rlar experiment``."""
    return Path(grid) / grid_run_rel(arm, seed, fold)


def find_grid_runs(grid: str | Path) -> list[tuple[str, int, int, Path]]:
    """(arm, seed, fold, path) of every finished ``<grid>/<arm>/seed<k>/fold<j>`` run, sorted: finished as the
    runner decides (:func:`is_finished`, a readable ``metrics.json``), so a run torn while writing it is neither
    skipped by the runner nor reported."""
    found = []
    for metrics in Path(grid).glob(f"*/seed*/fold*/{METRICS_FILE}"):
        run = metrics.parent
        seed, fold = _GRID_SEED.match(run.parent.name), _GRID_FOLD.match(run.name)
        if seed and fold and is_finished(run):
            found.append((run.parent.parent.name, int(seed.group(1)), int(fold.group(1)), run))
    return sorted(found)


def checkpoint_file(run_dir: str | Path, name: str = BEST) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / name


def fold_of(folder: str | Path) -> int | None:
    """The fold number a folder name states (``fold_3`` or ``fold3``), else None."""
    name = Path(folder).name
    match = _TRAIN_FOLD.match(name) or _GRID_FOLD.match(name)
    return int(match.group(1)) if match else None


def seed_of(folder: str | Path) -> int | None:
    """The seed number a folder name states (``seed2``), else None."""
    match = _GRID_SEED.match(Path(folder).name)
    return int(match.group(1)) if match else None


def has_checkpoint(run_dir: str | Path) -> bool:
    return any(checkpoint_file(run_dir, name).is_file() for name in CHECKPOINT_NAMES)


def is_finished(run_dir: str | Path) -> bool:
    """A run is finished when its ``metrics.json`` holds a JSON object (an empty or torn file is not)."""
    return isinstance(read_metrics(run_dir), dict)


def read_metrics(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``metrics.json``, or None when absent or unreadable."""
    try:
        data = json.loads((Path(run_dir) / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_config_dict(run_dir: str | Path) -> dict[str, Any]:
    """The resolved config of a run as a plain dict (validate it with ``rlar.training.config.validate_config``)."""
    import yaml

    path = Path(run_dir) / CONFIG_FILE
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise DataError(path, f"cannot read the run's config ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise DataError(path, f"the run's config is not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(path, "the run's config is not a mapping")
    return data


def run_dir_of(checkpoint: str | Path) -> Path:
    """The run folder of a checkpoint file (``<run>/checkpoints/best.pt`` -> ``<run>``)."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINT_DIR else checkpoint.parent


def chosen_checkpoint(run_dir: str | Path) -> Path:
    """The checkpoint a run reports and predicts with: the one ``metrics.json`` names, else best.pt, else last.pt."""
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    try:
        named = metrics["run"]["checkpoint"] if metrics else None
    except (KeyError, TypeError):
        named = None
    if isinstance(named, str) and named:
        if Path(named).is_file():
            return Path(named)
        if checkpoint_file(run_dir, Path(named).name).is_file():
            return checkpoint_file(run_dir, Path(named).name)
    for name in CHECKPOINT_NAMES:
        if checkpoint_file(run_dir, name).is_file():
            return checkpoint_file(run_dir, name)
    raise DataError(run_dir, f"has no checkpoint ({CHECKPOINT_DIR}/{BEST} or {LAST})")


@dataclass(frozen=True)
class RunRef:
    """One run folder found under a path, with the seed and fold its folder names state (None when they do not)."""

    path: Path
    seed: int | None
    fold: int | None

    @property
    def label(self) -> str:
        parts = ([f"seed{self.seed}"] if self.seed is not None else []) + (
            [f"fold{self.fold}"] if self.fold is not None else [])
        return "/".join(parts) or self.path.name


def _fold_children(folder: Path, seed: int | None) -> list[RunRef]:
    runs = [RunRef(child, seed, fold_of(child)) for child in folder.iterdir()
            if child.is_dir() and fold_of(child) is not None and has_checkpoint(child)]
    return sorted(runs, key=lambda r: (r.fold if r.fold is not None else -1, r.path.name))


def find_runs(path: str | Path) -> list[RunRef]:
    """The runs a path stands for, sorted by seed then fold:

    - a run folder (``checkpoints/`` inside): itself;
    - ``rlar train --fold all``'s folder, or a grid seed folder ``<grid>/<arm>/seed<k>``: its ``fold_*`` /
      ``fold*`` runs;
    - a grid arm ``<grid>/<arm>``: the fold runs of every ``seed*`` folder.

    An empty list when none of these holds a checkpoint.
    """
    path = Path(path)
    if not path.is_dir():
        return []
    if has_checkpoint(path):
        return [RunRef(path, seed_of(path.parent), fold_of(path))]
    runs = _fold_children(path, seed_of(path))
    if runs:
        return runs
    seeds = sorted((c for c in path.iterdir() if c.is_dir() and seed_of(c) is not None),
                   key=lambda c: seed_of(c) or 0)
    return [run for seed_dir in seeds for run in _fold_children(seed_dir, seed_of(seed_dir))]


def select_runs(path: str | Path, runs: Sequence[RunRef], folds: Sequence[int] | None = None,
                seeds: Sequence[int] | None = None) -> list[RunRef]:
    """``runs`` restricted to ``folds`` / ``seeds`` (None keeps all); DataError naming what does not exist."""
    chosen = list(runs)
    for what, wanted, attribute in (("fold", folds, "fold"), ("seed", seeds, "seed")):
        if wanted is None:
            continue
        want = {int(v) for v in wanted}
        present = {getattr(r, attribute) for r in chosen}
        missing = sorted(want - present)
        if missing:
            raise DataError(path, f"no run for {what}(s) {missing}; found "
                                  f"{', '.join(r.label for r in chosen) or 'none'}")
        chosen = [r for r in chosen if getattr(r, attribute) in want]
    return chosen


__all__ = ["BEST", "CHECKPOINT_DIR", "CHECKPOINT_NAMES", "COMPETITION_FILE", "CONFIG_FILE", "CURVES_FILE",
           "ERROR_FILE", "EVAL_PREDICTIONS_FILE", "EXTERNAL_DIR", "GRID_FILE", "GRID_SPLITS", "LAST", "LOG_FILE",
           "METRICS_FILE", "NODULE_PREDICTIONS_FILE", "PREDICTIONS_FILE", "SPLITS_FILE", "SUMMARY_FILE",
           "TENSORBOARD_DIR", "TRUTH_DIR", "RunRef", "checkpoint_file", "chosen_checkpoint", "find_grid_runs",
           "find_runs", "fold_of", "grid_run_dir", "grid_run_rel", "has_checkpoint", "is_finished",
           "read_config_dict", "read_metrics", "run_dir_of", "seed_of", "select_runs", "train_fold_dir"]
