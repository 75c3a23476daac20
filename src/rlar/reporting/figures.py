"""The report's figures (PNG, matplotlib Agg canvas, no pyplot state), drawn from a grid folder's runs.

- :func:`cosine_figure`: the tasks' gradient cosine at z per epoch (log.csv ``cosine``, see docs/interfaces.md), mean over the
  runs of each arm with a +/- std band; also RLAR's own-space cosine and the penalty's gradient share when logged;
- :func:`confusion_figure`: confusion matrices pooled over the test folds, one per arm;
- :func:`confusion_matrix_figure`: one confusion matrix of counts (``rlar evaluate --confusion-matrix``);
- :func:`reliability_figure`: reliability diagrams (top-label confidence vs accuracy, 10 bins) pooled per arm;
- :func:`forest_figure`: the paired differences of a table with their bootstrap 95 % CIs;
- :func:`annotator_figure`: metric vs annotator disagreement per method, mean with a 95 % t-interval over runs;
- :func:`overlay_figure`: best and worst test images of one run (needs the data source and torch).

Learning curves reuse :func:`rlar.reporting.curves.make_figure`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TABLEAU_COLORS
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy import stats

from rlar.reporting.collect import GridData
from rlar.reporting.tables import HEADERS, Table, classification_inputs

_COLOURS = list(TABLEAU_COLORS.values())
#: log.csv columns drawn by the cosine figure (docs/interfaces.md), with their panel titles.
COSINE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("cosine", r"cos($\nabla_z L_{seg}$, $\nabla_z L_{cls}$) at z (all methods)"),
    ("extra_cos_space", "cosine in RLAR's comparison space"),
    ("extra_penalty_share", r"penalty share $\|\lambda \nabla P\| / \|\nabla L\|$"),
)


def _figure(n_panels: int, width: float = 4.2, height: float = 3.6, ncols: int | None = None) -> tuple[Figure, Any]:
    ncols = ncols or min(n_panels, 4)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows + 0.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    return path


def cosine_figure(grid: GridData, arms: Sequence[str]) -> Figure | None:
    """Per-epoch mean (+/- std band) over each arm's runs of the logged cosine columns; None if none logged."""
    columns = [(c, t) for c, t in COSINE_COLUMNS
               if any(r.log is not None and c in r.log.columns and r.log[c].notna().any() for r in grid.runs)]
    if not columns:
        return None
    fig, axes = _figure(len(columns))
    for ax, (column, title) in zip(axes, columns):
        for i, arm in enumerate(arms):
            logs = [r.log[["epoch", column]] for r in grid.runs_of(arm) if r.log is not None and column in r.log.columns]
            if not logs:
                continue
            merged = pd.concat(logs).dropna().groupby("epoch")[column].agg(["mean", "std"]).reset_index()
            if merged.empty:
                continue
            colour = _COLOURS[i % len(_COLOURS)]
            ax.plot(merged["epoch"], merged["mean"], color=colour, label=arm, marker="o", markersize=3)
            ax.fill_between(merged["epoch"], merged["mean"] - merged["std"].fillna(0),
                            merged["mean"] + merged["std"].fillna(0), color=colour, alpha=0.15)
        if column != "extra_penalty_share":
            ax.axhline(0.0, color="0.3", linestyle="--", linewidth=1.0)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Gradient competition over training (mean ± std over folds and seeds)")
    return fig


def _pooled(grid: GridData, arm: str, key: str) -> pd.DataFrame | None:
    parts = [r.frames[key] for r in grid.runs_of(arm) if key in r.frames]
    return pd.concat(parts, ignore_index=True) if parts else None


def _labelled_predictions(grid: GridData, arms: Sequence[str], key: str, space: str
                          ) -> list[tuple[str, tuple[np.ndarray, np.ndarray, list[str]]]]:
    """(arm, (probs, labels, class names)) for every arm whose pooled predictions have a known label."""
    items = []
    for arm in arms:
        frame = _pooled(grid, arm, key)
        inputs = classification_inputs(frame, space) if frame is not None else None
        if inputs is not None and (inputs[1] >= 0).any():
            items.append((arm, inputs))
    return items


def confusion_figure(grid: GridData, arms: Sequence[str], key: str = "test", space: str = "levels") -> Figure | None:
    """Confusion matrices (rows = truth, columns = prediction; counts) pooled over each arm's test folds."""
    items = _labelled_predictions(grid, arms, key, space)
    if not items:
        return None
    fig, axes = _figure(len(items), width=3.6, height=3.4)
    for ax, (arm, (probs, labels, names)) in zip(axes, items):
        known = labels >= 0
        k = len(names)
        cm = np.bincount(labels[known] * k + probs[known].argmax(axis=1), minlength=k * k).reshape(k, k)
        ax.imshow(cm, cmap="Blues")
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
        ax.set_xticks(range(k), names, fontsize=7, rotation=45)
        ax.set_yticks(range(k), names, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(arm, fontsize=10)
    fig.suptitle(f"Confusion matrices, test folds pooled ({space})")
    return fig


def confusion_matrix_figure(matrix: Any, class_names: Sequence[str], title: str) -> Figure:
    """One confusion matrix of counts (rows = reference, columns = prediction), each cell labelled: the figure
    ``rlar evaluate --confusion-matrix`` writes (:func:`rlar.reporting.evaluate_model.write_confusion_matrix`)."""
    matrix = np.asarray(matrix)
    names = list(class_names)
    fig = Figure(figsize=(1.2 + 0.7 * len(names), 1.0 + 0.7 * len(names)))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(title, fontsize=9)
    peak = matrix.max() if matrix.size else 0
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(int(value)), ha="center", va="center", color="white" if value > peak / 2 else "black")
    fig.tight_layout()
    return fig


def reliability_figure(grid: GridData, arms: Sequence[str], key: str = "test", space: str = "levels",
                       n_bins: int = 10) -> Figure | None:
    """Top-label reliability diagram per arm: accuracy vs mean confidence in equal-width bins (bar width = bin)."""
    items = _labelled_predictions(grid, arms, key, space)
    if not items:
        return None
    fig, axes = _figure(len(items), width=3.4, height=3.4)
    edges = np.linspace(0, 1, n_bins + 1)
    for ax, (arm, (probs, labels, _)) in zip(axes, items):
        known = labels >= 0
        conf = probs[known].max(axis=1)
        correct = probs[known].argmax(axis=1) == labels[known]
        bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
        acc = np.array([correct[bins == b].mean() if (bins == b).any() else np.nan for b in range(n_bins)])
        count = np.bincount(bins, minlength=n_bins)
        ax.bar(edges[:-1], np.nan_to_num(acc), width=1 / n_bins, align="edge", edgecolor="black", alpha=0.7)
        ax.plot([0, 1], [0, 1], "--", color="0.3")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{arm} (n={int(count.sum())})", fontsize=10)
    fig.suptitle(f"Reliability diagrams, test folds pooled ({space})")
    return fig


def forest_figure(table: Table) -> Figure | None:
    """Each comparison of ``table`` as a point with its 95 % CI, one panel per metric, zero line for reference."""
    metrics = list(dict.fromkeys(c.metric for c in table.comparisons))
    if not metrics:
        return None
    fig, axes = _figure(len(metrics), width=5.0, height=0.5 + 0.45 * max(
        sum(c.metric == m for c in table.comparisons) for m in metrics))
    for ax, metric in zip(axes, metrics):
        rows = [c for c in table.comparisons if c.metric == metric]
        y = np.arange(len(rows))[::-1]
        est = np.array([c.estimate for c in rows])
        low = np.array([c.low for c in rows])
        high = np.array([c.high for c in rows])
        err = np.vstack([np.nan_to_num(est - low), np.nan_to_num(high - est)])
        ax.errorbar(est, y, xerr=err, fmt="o", color="black", capsize=3)
        ax.axvline(0.0, color="0.4", linestyle="--")
        ax.set_yticks(y, [f"{c.a} - {c.b}" for c in rows], fontsize=8)
        ax.set_xlabel(f"difference in {HEADERS[metric]} (95% CI)")
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(f"Paired differences: {table.spec.title} ({table.evaluation.key}, {table.space})", fontsize=10)
    return fig


def _t_interval(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size < 2:
        return (float(values.mean()) if values.size else math.nan), math.nan
    half = stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    return float(values.mean()), float(half)


def annotator_summary(points: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95 % t-interval over runs of each level, method, evaluation and metric of ``points`` (see
    :func:`annotator_figure`): the numbers the annotator figure draws, in level order."""
    rows = []
    methods = list(dict.fromkeys(points["method"]))
    for (evaluation, metric), sub in points.groupby(["evaluation", "metric"], sort=False):
        for method in methods:
            for (index, level), group in sub[sub["method"] == method].groupby(["level_index", "level"], sort=True):
                values = group["value"].to_numpy(dtype=np.float64)
                mean, half = _t_interval(values)
                rows.append({"level": level, "level_index": index, "method": method, "evaluation": evaluation,
                             "metric": metric, "n_runs": int(np.isfinite(values).sum()), "mean": mean,
                             "ci95_low": mean - half, "ci95_high": mean + half})
    return pd.DataFrame(rows, columns=["level", "level_index", "method", "evaluation", "metric", "n_runs", "mean",
                                       "ci95_low", "ci95_high"])


def annotator_figure(points: pd.DataFrame, noise: dict[str, dict[str, float]] | None = None) -> Figure:
    """Metric vs annotator level per method. ``points``: columns level, level_index, method, evaluation, metric,
    value (one row per run). Mean and 95 % t-interval over runs (:func:`annotator_summary`); the x labels carry
    the measured label noise."""
    summary = annotator_summary(points)
    panels = list(dict.fromkeys(zip(points["evaluation"], points["metric"])))
    fig, axes = _figure(len(panels), width=4.4, height=3.6)
    levels = points.drop_duplicates("level").sort_values("level_index")
    ticks = []
    for name in levels["level"]:
        label = str(name)
        if noise and name in noise:
            # one fact per line: side by side, five levels' labels run into each other
            label += f"\nDice {noise[name]['mask_dice_vs_truth']:.2f}\nerr {noise[name]['grade_error_rate']:.2f}"
        ticks.append(label)
    for ax, (evaluation, metric) in zip(axes, panels):
        sub = summary[(summary["evaluation"] == evaluation) & (summary["metric"] == metric)]
        for i, method in enumerate(dict.fromkeys(points["method"])):
            rows = sub[sub["method"] == method]
            if rows.empty:
                continue
            halves = (rows["ci95_high"] - rows["mean"]).fillna(0.0).to_numpy()
            ax.errorbar(rows["level_index"].to_numpy() + (i - 1) * 0.06, rows["mean"].to_numpy(), yerr=halves,
                        color=_COLOURS[i % len(_COLOURS)], marker="o", capsize=3, label=method)
        ax.set_xticks(levels["level_index"].to_numpy(), ticks, fontsize=7)
        ax.set_title(f"{HEADERS.get(metric, metric)} vs {evaluation}", fontsize=10)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Annotator study (phantom): metric vs training-label disagreement, mean ± 95% t-interval over runs\n"
                 "x labels: level, and its measured training-mask Dice vs truth and grade error rate", fontsize=10)
    return fig


def overlay_figure(run_dir: Path, frame: pd.DataFrame, n: int = 3, device: str = "cpu") -> Figure | None:
    """The ``n`` best and ``n`` worst test images of one run by Dice: image, reference contour (cyan), predicted
    contour (yellow), the colours of ``rlar predict`` and ``rlar evaluate``. Re-runs the run's chosen checkpoint on
    those images through :func:`rlar.evaluation.evaluate.predict` with the run's ``prediction`` section (flip TTA,
    mask clean-up), on its training source prepared as in training (needs torch and the data source)."""
    from rlar.data.dataset import ThyroidDataset
    from rlar.data.sources import open_source
    from rlar.evaluation.evaluate import predict
    from rlar.inference.loading import load_trained_model
    from rlar.inference.outputs import PRED_COLOUR, TRUE_COLOUR
    from rlar.runs import chosen_checkpoint

    scored = frame[frame["has_mask"].astype(bool) & np.isfinite(frame["dice"].to_numpy(dtype=np.float64))]
    if scored.empty:
        return None
    scored = scored.sort_values(["dice", "image_id"], kind="stable")
    chosen = pd.concat([scored.tail(n).iloc[::-1], scored.head(n)]).drop_duplicates("image_id")
    trained = load_trained_model(chosen_checkpoint(run_dir), device=device)
    cfg = trained.config
    source = open_source(cfg.data.source, cfg.data.root, **cfg.data.options)
    dataset = ThyroidDataset(source, list(chosen["image_id"]), image_size=trained.prep.image_size, label_space=None)
    predicted = predict(trained.model, dataset, batch_size=len(dataset), device=device, progress=False,
                        options=cfg.prediction)
    if "pred_mask" not in predicted.columns:
        return None
    pred_colour = tuple(c / 255 for c in PRED_COLOUR)
    true_colour = tuple(c / 255 for c in TRUE_COLOUR)
    fig, axes = _figure(len(dataset), width=2.6, height=2.8, ncols=min(len(dataset), n))
    for j, ax in enumerate(axes[: len(dataset)]):
        item = dataset[j]
        ax.imshow(item["image"][0].numpy(), cmap="gray")
        truth = item["mask"][0].numpy()
        if truth.any():
            ax.contour(truth, levels=[0.5], colors=[true_colour], linewidths=1.0)
        pred = np.asarray(predicted.iloc[j]["pred_mask"])
        if pred.any():
            ax.contour(pred.astype(float), levels=[0.5], colors=[pred_colour], linewidths=1.0)
        dice = float(chosen.iloc[j]["dice"])
        kind = "best" if j < min(n, len(chosen)) else "worst"
        ax.set_title(f"{kind}: {dataset.image_ids[j]}\nDice {dice:.3f}", fontsize=8)
        ax.set_axis_off()
    fig.suptitle(f"{run_dir.parent.parent.name}, {run_dir.parent.name}, {run_dir.name}: reference (cyan) vs "
                 "prediction (yellow)", fontsize=9)
    return fig


__all__ = ["COSINE_COLUMNS", "annotator_figure", "annotator_summary", "confusion_figure", "cosine_figure", "forest_figure",
           "overlay_figure", "reliability_figure", "save"]
