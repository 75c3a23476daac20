"""``rlar report``: every table of a grid folder (Markdown, CSV, LaTeX) and the figures beside them.

Output folder (default ``<grid>/report``)::

    report.md                        all tables with their captions, and links to the figures
    <table>__<evaluation>__<space>.{md,csv,tex}, ..._comparisons.csv
    runs.csv                         every run's own metrics (one row per run, evaluation and label space), and
                                     the environment that trained it when any run recorded one
    descriptors.csv                  the optional tasks' (ACR descriptors') scores per arm, when runs have them
    annotator.csv, annotator_trend.csv   the annotator study's per-level means, and the slope of each method
                                     difference across its levels (rlar.reporting.trend)
    learning_curves.png, cosine.png, confusion.png, reliability.png, forest.png, overlays.png, annotator.png

Tables are byte-for-byte reproducible from the run folders: rows follow the grid's order, the bootstrap has a
fixed seed, and numbers have a fixed format. Figures are informative only (not part of that promise).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from rlar.errors import ConfigError
from rlar.experiments.arms import TableSpec
from rlar.experiments.runner import LABEL_NOISE_FILE
from rlar.reporting import figures
from rlar.reporting.collect import GridData, load_grid_data
from rlar.reporting.descriptors import DESCRIPTORS_FILE, descriptor_section, descriptor_table
from rlar.reporting.environments import NOT_RECORDED, summarize
from rlar.reporting.stats import BOOTSTRAP_SEED, N_BOOTSTRAP
from rlar.reporting.tables import (
    METRICS,
    SPACES,
    Table,
    build_table,
    frame_metrics,
    run_metrics,
    to_csv,
    to_latex,
    to_markdown,
)
from rlar.reporting.trend import ANNOTATOR_EVALUATIONS, TREND_METRICS, annotator_trends, trend_section

FORMATS: tuple[str, ...] = ("md", "csv", "tex")


def with_reference(spec: TableSpec, reference: str) -> TableSpec:
    """The main table compared with another reference: every arm vs it, plus rlar vs guided_mtl."""
    if reference not in spec.arms:
        raise ConfigError("--reference", f"'{reference}' is not a row of table '{spec.name}' ({', '.join(spec.arms)})")
    pairs = [(a, reference) for a in spec.arms if a != reference]
    if "rlar" in spec.arms and "guided_mtl" in spec.arms and reference != "guided_mtl":
        pairs.append(("rlar", "guided_mtl"))
    return replace(spec, comparisons=tuple(pairs))


def build_tables(grid: GridData, reference: str | None = None, n_resamples: int = N_BOOTSTRAP,
                 seed: int = BOOTSTRAP_SEED) -> list[Table]:
    """Every (table, evaluation, label space) combination that has data, in grid order."""
    out = []
    for spec in grid.tables:
        if reference is not None and spec.name == "main":
            spec = with_reference(spec, reference)
        for evaluation in grid.evaluations:
            for space in SPACES:
                table = build_table(grid, spec, evaluation, space, n_resamples, seed)
                if table is not None:
                    out.append(table)
    return out


def _annotator_points(grid: GridData) -> pd.DataFrame:
    rows = []
    for arm in grid.arms.values():
        if "level" not in arm.meta:
            continue
        for run in grid.runs_of(arm.name):
            for key, frame in sorted(run.frames.items()):
                if key not in ANNOTATOR_EVALUATIONS:
                    continue
                metrics = frame_metrics(frame, "levels")
                for metric in TREND_METRICS:
                    rows.append({"level": arm.meta["level"], "level_index": arm.meta["level_index"],
                                 "method": arm.meta.get("method", arm.method),
                                 "evaluation": ANNOTATOR_EVALUATIONS[key], "metric": metric,
                                 "value": metrics[metric]})
    return pd.DataFrame(rows)


def _draw(name: str, out: Path, make: Callable[[], Figure | None], written: list[Path]) -> None:
    """Draw one figure; a failure (missing data source, no torch, fonts) only warns: tables matter more."""
    try:
        fig = make()
    except Exception as exc:  # noqa: BLE001
        warnings.warn(f"figure {name} not drawn: {type(exc).__name__}: {exc}", stacklevel=2)
        return
    if fig is not None:
        written.append(figures.save(fig, out / name))


def write_figures(grid: GridData, tables: list[Table], out: Path, overlays: bool = True,
                  annotator_points: pd.DataFrame | None = None) -> list[Path]:
    """Draw the report's figures into ``out``; ``annotator_points`` when the caller already has them."""
    from rlar.reporting.curves import make_figure

    written: list[Path] = []
    main = next((t for t in grid.tables if t.name == "main"), grid.tables[0] if grid.tables else None)
    arms = list(main.arms) if main is not None else sorted(grid.arms)
    firsts = [runs[0] for arm in arms if (runs := grid.runs_of(arm)) and runs[0].log is not None]
    if firsts:
        _draw("learning_curves.png", out,
              lambda: make_figure([r.path for r in firsts], [f"{r.arm} (seed {r.seed}, fold {r.fold})" for r in firsts]),
              written)
    _draw("cosine.png", out, lambda: figures.cosine_figure(grid, arms), written)
    _draw("confusion.png", out, lambda: figures.confusion_figure(grid, arms), written)
    _draw("reliability.png", out, lambda: figures.reliability_figure(grid, arms), written)
    forest = next((t for t in tables if t.spec.name == (main.name if main else "") and t.comparisons), None)
    if forest is not None:
        _draw("forest.png", out, lambda: figures.forest_figure(forest), written)
    if overlays:
        preferred = "rlar" if "rlar" in arms else (arms[0] if arms else None)
        runs = grid.runs_of(preferred) if preferred else []
        if runs and "test" in runs[0].frames and "dice" in runs[0].frames["test"].columns:
            _draw("overlays.png", out, lambda: figures.overlay_figure(runs[0].path, runs[0].frames["test"]), written)
    points = _annotator_points(grid) if annotator_points is None else annotator_points
    if not points.empty:
        noise_path = grid.root / LABEL_NOISE_FILE
        noise = json.loads(noise_path.read_text()) if noise_path.is_file() else None
        _draw("annotator.png", out, lambda: figures.annotator_figure(points, noise), written)
    return written


#: The per-run table of the report: what each cell of the mean +/- std tables was computed from.
RUNS_FILE = "runs.csv"
#: The annotator study's summary: what annotator.png draws, as numbers.
ANNOTATOR_FILE = "annotator.csv"
#: The annotator study's test of its claim: the slope of each method difference across the levels.
ANNOTATOR_TREND_FILE = "annotator_trend.csv"


def runs_table(grid: GridData) -> pd.DataFrame:
    """One row per finished run, evaluation and label space: the run's own metrics (the values the tables
    average), in grid order (arm, seed, fold); an ``environment`` column (rlar.reporting.environments) when any
    run recorded where it ran."""
    order = {name: k for k, name in enumerate(grid.arms)}
    recorded = any(run.environment is not None for run in grid.runs)
    extra = ["environment"] if recorded else []
    rows = []
    for run in sorted(grid.runs, key=lambda r: (order.get(r.arm, len(order)), r.arm, r.seed, r.fold)):
        for evaluation in grid.evaluations:
            if evaluation.key not in run.frames:
                continue
            for space in SPACES:
                metrics = run_metrics(run, evaluation.key, space)
                if not any(math.isfinite(metrics[m]) for m in METRICS):
                    continue
                rows.append({"arm": run.arm, "seed": run.seed, "fold": run.fold, "evaluation": evaluation.key,
                             "space": space, "n_test": run.n_test, **metrics, "environment": run.environment_name})
    return pd.DataFrame(rows, columns=["arm", "seed", "fold", "evaluation", "space", "n_test", *METRICS, *extra])


def environments_section(grid: GridData) -> list[str]:
    """report.md lines listing which environment trained which arms' runs; none when no run recorded one."""
    summaries = summarize((run.arm, run.environment) for run in grid.runs)
    if all(s.name == NOT_RECORDED for s in summaries):
        return []
    lines = ["## Environments", "",
             "Where the runs were trained (the `environment` column of runs.csv). Runs of one config on two "
             "environments differ like a change of seed, so compare arms within one environment where you can.", "",
             "| environment | runs | arms | CPU/GPU, threads, libraries |", "|---|---|---|---|"]
    for s in summaries:
        what = s.description or "runs written before rlar recorded the environment"
        lines.append(f"| {s.name} | {s.n_runs} | {', '.join(s.arms)} | {what} |")
    return [*lines, ""]


def write_report(root: str | Path, out: str | Path | None = None, reference: str | None = None,
                 formats: Sequence[str] = FORMATS, draw_figures: bool = True, overlays: bool = True,
                 n_resamples: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED) -> list[Path]:
    """Write the report of grid folder ``root`` (module docstring); returns the files written, report.md first."""
    return make_report(root, out, reference, formats, draw_figures, overlays, n_resamples, seed)[0]


def regenerate_command(root: str | Path, reference: str | None, formats: Sequence[str],
                       draw_figures: bool, overlays: bool, n_resamples: int) -> str:
    """The ``rlar report`` command that recomputes this report: the grid folder as it was given (not only its last
    name, which names another folder from anywhere but the grid's parent), and every option that changes the
    content. ``--out`` is left out on purpose: it does not change the report, and naming it would make two copies
    of one report differ byte for byte."""
    import shlex

    parts = ["rlar", "report", shlex.quote(str(root))]
    if reference is not None:
        parts += ["--reference", shlex.quote(reference)]
    if list(formats) != list(FORMATS):
        parts += ["--format", ",".join(formats)]
    if not draw_figures:
        parts.append("--no-figures")
    elif not overlays:
        parts.append("--no-overlays")
    if n_resamples != N_BOOTSTRAP:
        parts += ["--bootstrap", str(n_resamples)]
    return " ".join(parts)


def make_report(root: str | Path, out: str | Path | None = None, reference: str | None = None,
                formats: Sequence[str] = FORMATS, draw_figures: bool = True, overlays: bool = True,
                n_resamples: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED) -> tuple[list[Path], list[Table]]:
    """:func:`write_report`, also returning the tables it wrote."""
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ConfigError("--format", f"unknown format(s) {bad}; choose from {', '.join(FORMATS)}")
    grid = load_grid_data(root)
    out = Path(out) if out is not None else grid.root / "report"
    out.mkdir(parents=True, exist_ok=True)
    tables = build_tables(grid, reference, n_resamples, seed)
    written: list[Path] = []
    for table in tables:
        if "md" in formats:
            (out / f"{table.slug}.md").write_text(to_markdown(table))
            written.append(out / f"{table.slug}.md")
        if "csv" in formats:
            rows, comparisons = to_csv(table)
            (out / f"{table.slug}.csv").write_text(rows)
            written.append(out / f"{table.slug}.csv")
            if table.comparisons:
                (out / f"{table.slug}_comparisons.csv").write_text(comparisons)
                written.append(out / f"{table.slug}_comparisons.csv")
        if "tex" in formats:
            (out / f"{table.slug}.tex").write_text(to_latex(table))
            written.append(out / f"{table.slug}.tex")
    annotator_points = _annotator_points(grid)
    trends = annotator_trends(grid, n_resamples, seed) if not annotator_points.empty else pd.DataFrame()
    descriptors = descriptor_table(grid)
    if "csv" in formats:
        runs_table(grid).to_csv(out / RUNS_FILE, index=False, float_format="%.6f")
        written.append(out / RUNS_FILE)
        if not descriptors.empty:
            descriptors.to_csv(out / DESCRIPTORS_FILE, index=False, float_format="%.6f")
            written.append(out / DESCRIPTORS_FILE)
        if not annotator_points.empty:
            figures.annotator_summary(annotator_points).to_csv(out / ANNOTATOR_FILE, index=False, float_format="%.6f")
            written.append(out / ANNOTATOR_FILE)
        if not trends.empty:
            trends.to_csv(out / ANNOTATOR_TREND_FILE, index=False, float_format="%.6f")
            written.append(out / ANNOTATOR_TREND_FILE)
    pictures = write_figures(grid, tables, out, overlays, annotator_points) if draw_figures else []
    n_runs = len(grid.runs)
    lines = [f"# Report: {grid.root.name}", "",
             f"{n_runs} finished runs of {len(grid.arms)} arms; {len(tables)} tables. Regenerate with "
             f"`{regenerate_command(root, reference, formats, draw_figures, overlays, n_resamples)}` "
             f"(bootstrap: {n_resamples} resamples, seed {seed}).", ""]
    missing = sorted({a for a in grid.arms if not grid.runs_of(a)})
    if missing:
        lines += [f"Arms of the grid without a finished run (left out): {', '.join(missing)}.", ""]
    lines += [to_markdown(t) for t in tables]
    lines += trend_section(trends, ANNOTATOR_TREND_FILE if "csv" in formats else None)
    lines += descriptor_section(descriptors)
    lines += environments_section(grid)
    if "csv" in formats:
        lines += [f"Every run's own metrics (the values behind each mean ± std): [{RUNS_FILE}]({RUNS_FILE}).", ""]
        if not annotator_points.empty:
            lines += [f"The annotator figure's numbers (mean and 95 % t-interval over runs per level and method): "
                      f"[{ANNOTATOR_FILE}]({ANNOTATOR_FILE}).", ""]
    if pictures:
        lines += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in pictures] + [""]
    index = out / "report.md"
    index.write_text("\n".join(lines))
    return [index, *written, *pictures], tables


def headline(tables: list[Table]) -> str:
    """A short text summary of the first table (for the terminal)."""
    if not tables:
        return "no table"
    t = tables[0]
    lines = [f"{t.spec.title} ({t.evaluation.key}, {t.space}):"]
    for row in t.rows:
        d, f = row.cells["dice"], row.cells["macro_f1"]
        lines.append(f"  {row.arm:<28} Dice {_ms(d.mean, d.std)}  macro-F1 {_ms(f.mean, f.std)}  ({row.n_runs} runs)")
    return "\n".join(lines)


def _ms(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "  n/a        "
    return f"{mean:.3f} ± {std:.3f}" if math.isfinite(std) else f"{mean:.3f} ± n/a  "


__all__ = ["FORMATS", "build_tables", "headline", "make_report", "with_reference",
           "write_figures", "write_report"]
