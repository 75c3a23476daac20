"""The task-competition map: where, during training, the segmentation and classification gradients meet.

Reads the ``competition.csv`` that every two-task run writes (rlar.training.competition: per encoder layer, the
per-sample cosine of dL_seg/dh and dL_cls/dh and the ratio of their norms, before training and at each
validation) from one or more run folders, e.g. every fold and seed of a grid arm, and draws

* the median over runs of each layer's per-sample cosine distribution (median line, 10th-90th percentile band),
* the mean |cos| per layer, over the whole map and in the channel space,
* the median log10 norm ratio seg/cls per layer,

against the epoch, with a table of the same at initialisation and at the last measured epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rlar.runs import COMPETITION_FILE

#: What the table reports per layer (the mean over runs of each statistic of competition.csv).
TABLE_COLUMNS = ("cos_mean", "cos_q10", "cos_q90", "abs_cos_mean", "chan_abs_cos_mean", "log10_norm_ratio")


def find_competition_files(paths: Sequence[Path]) -> list[Path]:
    """Every competition.csv in or under ``paths`` (a run folder, a grid arm, a whole grid), sorted."""
    found: set[Path] = set()
    for path in paths:
        path = Path(path)
        if path.is_file() and path.name == COMPETITION_FILE:
            found.add(path)
        elif path.is_dir():
            found.update(path.rglob(COMPETITION_FILE))
    return sorted(found)


def load_competition(paths: Sequence[Path]) -> pd.DataFrame:
    """All rows of the competition.csv files under ``paths``, with a ``run`` column (the run folder); the layer
    order of the first file (fine to coarse) is kept as an ordered categorical."""
    files = find_competition_files(paths)
    if not files:
        raise FileNotFoundError(f"no {COMPETITION_FILE} under {', '.join(str(p) for p in paths)} (two-task runs "
                                "trained with training.competition_probe > 0 write one)")
    frames = [pd.read_csv(f).assign(run=str(f.parent)) for f in files]
    frame = pd.concat(frames, ignore_index=True)
    order = list(dict.fromkeys(frames[0]["layer"]))
    order += [layer for layer in dict.fromkeys(frame["layer"]) if layer not in order]
    frame["layer"] = pd.Categorical(frame["layer"], categories=order, ordered=True)
    return frame


def competition_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per layer, at initialisation (epoch 0) and at each run's last measured epoch: the mean over runs of
    :data:`TABLE_COLUMNS`, and the number of runs."""
    last = frame.groupby("run")["epoch"].transform("max")
    parts = {"initialisation": frame[frame["epoch"] == 0], "trained (last epoch)": frame[frame["epoch"] == last]}
    rows = []
    for when, part in parts.items():
        for layer, group in part.groupby("layer", observed=True):
            rows.append({"when": when, "layer": str(layer), "runs": group["run"].nunique(),
                         **{c: float(group[c].mean()) for c in TABLE_COLUMNS}})
    return pd.DataFrame(rows, columns=["when", "layer", "runs", *TABLE_COLUMNS])


def table_markdown(table: pd.DataFrame) -> str:
    """The table as Markdown, 3 decimals."""
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    lines = [header, rule]
    for row in table.itertuples(index=False):
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_competition(frame: pd.DataFrame, out: Path, title: str | None = None) -> Path:
    """Draw the map (module docstring) to ``out``; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = list(frame["layer"].cat.categories)
    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, max(len(layers), 1)))
    by = frame.groupby(["layer", "epoch"], observed=True)
    stats = by[["cos_q10", "cos_q50", "cos_q90", "abs_cos_mean", "chan_abs_cos_mean", "log10_norm_ratio"]].median()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for colour, layer in zip(colours, layers, strict=True):
        if layer not in stats.index.get_level_values(0):
            continue
        s = stats.loc[layer]
        axes[0].plot(s.index, s["cos_q50"], color=colour, label=layer)
        axes[0].fill_between(s.index, s["cos_q10"], s["cos_q90"], color=colour, alpha=0.15)
        axes[1].plot(s.index, s["abs_cos_mean"], color=colour, label=f"{layer} (map)")
        axes[1].plot(s.index, s["chan_abs_cos_mean"], color=colour, linestyle="--", label=f"{layer} (channels)")
        axes[2].plot(s.index, s["log10_norm_ratio"], color=colour, label=layer)
    axes[0].axhline(0.0, color="grey", linewidth=0.8)
    axes[0].set_title("per-sample cos(dL_seg/dh, dL_cls/dh): median, 10-90 %")
    axes[1].set_title("mean |cos|: whole map (solid), channel space (dashed)")
    axes[2].axhline(0.0, color="grey", linewidth=0.8)
    axes[2].set_title("median log10 ||dL_seg/dh|| / ||dL_cls/dh||")
    for ax in axes:
        ax.set_xlabel("epoch (0 = initialisation)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, title="layer (fine to coarse)")
    runs = frame["run"].nunique()
    fig.suptitle(title or f"where the tasks compete: {runs} run(s), median over runs")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


__all__ = ["TABLE_COLUMNS", "competition_table", "find_competition_files", "load_competition", "plot_competition",
           "table_markdown"]
