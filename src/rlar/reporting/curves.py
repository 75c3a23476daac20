"""Training curves of one or more run folders in one figure (``curves.png``).

Each run folder written by :func:`rlar.training.run.run_training` holds ``log.csv`` (one row per epoch). This
module draws, per epoch:

- the training losses (total, segmentation, classification, radiomics guidance L_rad), one panel each;
- the measured cosine between the tasks' gradient directions at the shared representation z, i.e. the gradient
  competition RLAR regularises, with a reference line at 0 (orthogonal directions) and, for RLAR runs with a
  threshold, at the run's tau (the penalty acts on cosines above it);
- validation Dice and validation macro-F1 (validation may run every few epochs only: the points are joined over
  the epochs that have them, and the best checkpoint's epoch from ``metrics.json`` is starred);
- the learning rate.

Several runs overlay with one colour per run. A column a run did not log (a segmentation-only run has no
classification loss and no cosine) is simply not drawn for that run; a panel no run can fill says so.

The figure is built with matplotlib's object-oriented API on an Agg canvas: no display, no pyplot global state,
so it is safe inside a training process or a headless server.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TABLEAU_COLORS
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from rlar.errors import ConfigError, DataError
from rlar.runs import CONFIG_FILE, LOG_FILE, read_metrics


@dataclass(frozen=True)
class Panel:
    """One axes of the figure: which log.csv column it draws and how it is titled."""

    column: str
    title: str
    ylabel: str
    missing: str  # shown in the empty panel when no run logged the column


# Order = reading order in the 2 x 4 grid: losses on the top row, competition / validation / lr below.
PANELS: tuple[Panel, ...] = (
    Panel("total", "Total training loss (method objective)", "loss", "no run logged a total loss"),
    Panel("loss_seg", "Segmentation loss (Dice + BCE)", "loss", "no segmentation task in these runs"),
    Panel("loss_cls", "Classification loss (cross-entropy)", "loss", "no classification task in these runs"),
    Panel("loss_rad", "Radiomics guidance loss $L_{rad}$", "loss", "no radiomics guidance in these runs"),
    Panel("cosine", r"Gradient cosine at $z$: cos($\nabla_z L_{seg}$, $\nabla_z L_{cls}$)",
          "cosine (> 0 aligned, < 0 conflicting)",
          "no cosine measured (single-task runs)"),
    Panel("val_dice", "Validation Dice", "Dice", "no segmentation validation in these runs"),
    Panel("val_macro_f1", "Validation macro-F1 (TI-RADS)", "macro-F1", "no classification validation in these runs"),
    Panel("lr", "Learning rate", "lr", "no learning rate logged"),
)
N_ROWS, N_COLS = 2, 4
# Columns on which the best checkpoint (chosen on the validation score) is marked.
_VALIDATION_COLUMNS = {"val_dice", "val_macro_f1"}
# Beyond this many points per line, markers only clutter the curve.
_MAX_MARKED_POINTS = 40
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
# gid of the data lines (``run:<label>``), which tells them apart from reference lines such as tau.
RUN_GID_PREFIX = "run:"


@dataclass
class RunCurves:
    """What the figure needs from one run folder."""

    path: Path
    label: str
    log: pd.DataFrame
    tau: list[float] = field(default_factory=list)  # RLAR thresholds to draw on the cosine panel
    best_epoch: int | None = None


def read_log(run_dir: str | Path) -> pd.DataFrame:
    """The run's ``log.csv`` sorted by epoch, columns coerced to numbers.

    Raises DataError naming the folder when it has no log.csv, the file is empty, or it lacks the epoch column.
    """
    run_dir = Path(run_dir)
    path = run_dir / LOG_FILE
    if not run_dir.is_dir():
        raise DataError(run_dir, "is not a run folder (no such directory)")
    if not path.is_file():
        raise DataError(run_dir, f"has no {LOG_FILE}; is it a training run folder, and has an epoch finished?")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(path, "is empty (no epoch has finished yet)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot be parsed as CSV ({exc})") from None
    if "epoch" not in frame.columns:
        raise DataError(path, "has no 'epoch' column; not a log written by rlar train")
    if frame.empty:
        raise DataError(path, "has no rows (no epoch has finished yet)")
    # Non-numeric cells (a hand-edited log, a stray string) become NaN and are skipped like any missing value.
    frame = frame.apply(pd.to_numeric, errors="coerce")
    return frame.sort_values("epoch").reset_index(drop=True)


def read_tau(run_dir: str | Path) -> list[float]:
    """Cosine thresholds of an RLAR run from its ``config.yaml`` (``[]`` for other methods or tau = 0).

    tau = 0 coincides with the zero line, which is always drawn. With ``absolute: true`` the penalty acts on
    |cos| > tau, so both +tau and -tau are returned. A missing or unreadable config only means no tau line.
    """
    path = Path(run_dir) / CONFIG_FILE
    try:
        config = yaml.safe_load(path.read_text())
        strategy = config["strategy"]
        if strategy.get("name") != "rlar":
            return []
        options = (strategy.get("options") or {}).get("rlar") or {}
        tau = float(options.get("tau", 0.0))
        absolute = bool(options.get("absolute", False))
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError, ValueError):
        return []
    if tau == 0.0 or not math.isfinite(tau):
        return []
    return sorted({tau, -tau}) if absolute else [tau]


def read_best_epoch(run_dir: str | Path) -> int | None:
    """Epoch of the checkpoint the run kept as best (``metrics.json`` -> run.best_epoch), if recorded."""
    run: Any = (read_metrics(run_dir) or {}).get("run")
    try:
        value = run["best_epoch"]
        return int(value) if value is not None else None
    except (ValueError, KeyError, TypeError):
        return None


def default_labels(run_dirs: list[Path]) -> list[str]:
    """Run folder names, lengthened to the shortest distinct path suffix when names repeat.

    ``runs/rlar/fold_0`` and ``runs/vanilla_mtl/fold_0`` become ``rlar/fold_0`` and ``vanilla_mtl/fold_0``
    rather than two indistinguishable ``fold_0`` entries in the legend.
    """
    parts = [Path(p).resolve().parts for p in run_dirs]
    longest = max((len(p) for p in parts), default=1)
    for depth in range(1, longest + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [str(p) for p in run_dirs]  # the same folder given twice: nothing distinguishes them


def load_runs(run_dirs: list[str | Path], labels: list[str] | None = None) -> list[RunCurves]:
    """Read every run folder (log, tau, best epoch). Errors name the folder; ``labels`` must match in number."""
    paths = [Path(p) for p in run_dirs]
    if not paths:
        raise ConfigError("run_dirs", "give at least one run folder")
    if labels is not None and len(labels) != len(paths):
        raise ConfigError("labels", f"got {len(labels)} labels for {len(paths)} run folders; give one per run")
    names = list(labels) if labels is not None else default_labels(paths)
    return [
        RunCurves(path=p, label=name, log=read_log(p), tau=read_tau(p), best_epoch=read_best_epoch(p))
        for p, name in zip(paths, names, strict=True)
    ]


def _series(log: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(epochs, values) of the finite entries of a column, or None when the run has none."""
    if column not in log.columns:
        return None
    values = log[column].to_numpy(dtype=float)
    epochs = log["epoch"].to_numpy(dtype=float)
    keep = np.isfinite(values) & np.isfinite(epochs)
    if not keep.any():
        return None
    return epochs[keep], values[keep]


def _run_style(index: int, n_runs: int) -> dict[str, Any]:
    """Line style of the index-th run: its own marker shape, and runs drawn earlier slightly larger.

    Runs often coincide (same learning-rate schedule, same first-epoch validation); the later run is drawn on
    top, so shrinking it leaves the earlier one visible around it instead of hidden underneath.
    """
    larger = n_runs - 1 - index
    return {"marker": _MARKERS[index % len(_MARKERS)], "markersize": 4.5 + 1.5 * min(larger, 4),
            "linewidth": 1.6 + 0.6 * min(larger, 4)}


def _draw_panel(ax: Axes, panel: Panel, runs: list[RunCurves], colours: list[Any]) -> int:
    """Draw one panel; returns how many runs had data for it."""
    drawn = 0
    for index, (run, colour) in enumerate(zip(runs, colours, strict=True)):
        series = _series(run.log, panel.column)
        if series is None:
            continue
        epochs, values = series
        style = _run_style(index, len(runs))
        if len(epochs) > _MAX_MARKED_POINTS:
            style["marker"] = None
        # gid marks data lines, so tests and callers can tell them from the reference lines.
        ax.plot(epochs, values, color=colour, label=run.label, gid=f"{RUN_GID_PREFIX}{run.label}", **style)
        if panel.column in _VALIDATION_COLUMNS and run.best_epoch is not None:
            at = epochs == run.best_epoch
            if at.any():
                ax.plot(epochs[at], values[at], linestyle="none", marker="*", color=colour,
                        markersize=style["markersize"] + 8,
                        markeredgecolor="black", markeredgewidth=0.6, zorder=5)
        drawn += 1
    if drawn == 0:
        ax.text(0.5, 0.5, panel.missing, transform=ax.transAxes, ha="center", va="center", color="0.45",
                fontsize=9, wrap=True)
        ax.set_xticks([])
        ax.set_yticks([])
    return drawn


def _decorate_cosine(ax: Axes, runs: list[RunCurves], colours: list[Any], has_data: bool) -> None:
    """Zero line (orthogonal task directions) and each RLAR run's tau, with a small legend explaining them."""
    if not has_data:
        return
    handles: list[Line2D] = [ax.axhline(0.0, color="0.3", linestyle="--", linewidth=1.0, zorder=0)]
    names = ["0: orthogonal directions"]
    refs = [0.0]
    for run, colour in zip(runs, colours, strict=True):
        if _series(run.log, "cosine") is None:
            continue  # no measured cosine to compare this run's tau with
        for tau in run.tau:
            refs.append(tau)
            line = ax.axhline(tau, color=colour, linestyle=":", linewidth=1.4, zorder=0)
            handles.append(line)
            names.append(f"tau = {tau:g} ({run.label})")
    ax.legend(handles, names, fontsize=7, loc="best", framealpha=0.8)
    # Keep the reference lines in view even when the measured cosines sit far from them.
    low, high = ax.get_ylim()
    pad = 0.05 * max(high - low, 1e-3)
    ax.set_ylim(min(low, min(refs) - pad), max(high, max(refs) + pad))


def make_figure(run_dirs: Sequence[str | Path], labels: list[str] | None = None) -> Figure:
    """The training-curves figure of one or more run folders (not saved; see :func:`plot_runs`).

    Args:
        run_dirs: run folders, each with a ``log.csv``; ``config.yaml`` and ``metrics.json`` are optional
            (tau line, best-epoch star).
        labels: legend name per run (e.g. the method); default: the folder names.
    Returns a Figure with ``len(PANELS)`` axes in a 2 x 4 grid, in the order of :data:`PANELS`.
    Raises DataError naming a folder without a readable log.csv; ConfigError for a label count mismatch.
    """
    runs = load_runs(list(run_dirs), labels)
    fig = Figure(figsize=(4.2 * N_COLS, 3.6 * N_ROWS + 0.6), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)  # an explicit Agg canvas: rendering never needs a display
    axes = fig.subplots(N_ROWS, N_COLS, squeeze=False).ravel()
    # tab10 rather than the user's rc cycle: the same run keeps the same colour in every panel and every plot.
    cycle = list(TABLEAU_COLORS.values())
    colours = [cycle[i % len(cycle)] for i in range(len(runs))]

    epochs = np.concatenate([run.log["epoch"].to_numpy(dtype=float) for run in runs])
    epochs = epochs[np.isfinite(epochs)]
    first_epoch, last_epoch = (float(epochs.min()), float(epochs.max())) if epochs.size else (0.0, 1.0)

    for ax, panel in zip(axes, PANELS, strict=True):
        drawn = _draw_panel(ax, panel, runs, colours)
        ax.set_title(panel.title, fontsize=10)
        if drawn:
            ax.set_xlabel("epoch")
            ax.set_ylabel(panel.ylabel)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
            if last_epoch - first_epoch < 2:  # a 1-2 epoch run: avoid a zoomed-in axis with fractional epochs
                ax.set_xlim(first_epoch - 0.5, last_epoch + 0.5)
            # No "+1.618" offset text: it collides with the title and hides the actual loss level.
            ax.ticklabel_format(axis="y", useOffset=False)
            ax.grid(True, alpha=0.3)
        if panel.column == "cosine":
            _decorate_cosine(ax, runs, colours, bool(drawn))
        elif panel.column == "lr" and drawn:
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))

    # One legend for the runs (colour = run) instead of eight repeated ones.
    handles = [Line2D([], [], color=c, **_run_style(i, len(runs))) for i, c in enumerate(colours)]
    names = [run.label for run in runs]
    if any(run.best_epoch is not None for run in runs):
        handles.append(Line2D([], [], linestyle="none", marker="*", markersize=11, color="0.6",
                              markeredgecolor="black", markeredgewidth=0.6))
        names.append("best checkpoint (validation score)")
    fig.legend(handles, names, loc="outside upper center", ncols=min(len(names), 5), fontsize=9, frameon=False)
    return fig


def plot_runs(run_dirs: list[Path], out: Path, labels: list[str] | None = None) -> Path:
    """Write the training-curves figure of ``run_dirs`` to ``out`` (PNG, or any format matplotlib infers from the
    suffix) and return the path written. Parent folders are created.

    Raises DataError naming a folder without a readable log.csv; ConfigError when ``labels`` does not match.
    """
    out = Path(out)
    fig = make_figure(run_dirs, labels)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
