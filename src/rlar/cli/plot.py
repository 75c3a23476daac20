"""``rlar plot``: training curves of one or more run folders in one PNG.

Examples::

    rlar plot runs/phantom/rlar/fold_0 --out rlar_curves.png
    rlar plot runs/rlar/fold_0 runs/vanilla_mtl/fold_0 --labels RLAR "vanilla MTL" --out compare.png

Panels: training losses (total, seg, cls, rad), the cosine between the tasks' gradient directions at z (with 0
and each RLAR run's tau), validation Dice and macro-F1 (best checkpoint starred) and the learning rate.

With ``--competition`` it draws instead where the tasks compete (rlar.reporting.competition): the per-layer
distribution of cos(dL_seg/dh, dL_cls/dh) and the norm ratio over training, from the competition.csv of every run
under the given folders (a run, a grid arm with its seeds and folds, a whole grid), and writes the table beside
the figure (same name, .md)::

    rlar plot --competition runs/ddti_grid/vanilla_mtl --out competition.png
The output's format comes from its suffix; an unknown suffix or an unwritable place is an error before drawing.
"""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path

from rlar.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="plot training curves of run folders",
        description="Draw the per-epoch curves of one or more training run folders (each with a log.csv) in one "
        "figure; several runs overlay with one colour per run.",
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folder(s) written by 'rlar train'")
    parser.add_argument("--out", default="curves.png",
                        help="image to write (default: curves.png; the suffix picks the format, e.g. .pdf, .svg)")
    parser.add_argument("--labels", nargs="+", default=None, metavar="LABEL",
                        help="legend name per run, in the order of RUN_DIR (default: the folder names)")
    parser.add_argument("--competition", action="store_true",
                        help="draw the task-competition map of every run under RUN_DIR (competition.csv) and "
                             "write its table beside the figure (.md)")
    parser.set_defaults(func=run)


def image_formats() -> list[str]:
    """File suffixes (without the dot) that matplotlib can write here."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    return sorted(FigureCanvasAgg(Figure()).get_supported_filetypes())


def check_image_suffix(out: Path) -> None:
    """ConfigError naming ``--out`` when its suffix is not an image format matplotlib writes (did-you-mean)."""
    formats = image_formats()
    suffix = out.suffix.lower().lstrip(".")
    if suffix in formats:
        return
    close = difflib.get_close_matches(suffix, formats, n=1)
    hint = f"did you mean '.{close[0]}'? " if close else ""
    what = f"'{out.suffix}'" if suffix else "no suffix"
    raise ConfigError("--out", f"{out}: {what} is not an image format; {hint}use one of .{', .'.join(formats)}")


def run(args: argparse.Namespace) -> int:
    from rlar.cli.common import check_output_file
    from rlar.reporting.curves import plot_runs

    out = Path(args.out)
    check_image_suffix(out)
    check_output_file(out)
    missing = [p for p in args.run_dirs if not Path(p).is_dir()]
    if missing:
        raise ConfigError("RUN_DIR", f"not a folder: {', '.join(missing)} (give run folders written by 'rlar train')")
    if args.competition:
        return _competition(args, out)
    written = plot_runs([Path(p) for p in args.run_dirs], out, labels=args.labels)
    print(written)
    return 0


def _competition(args: argparse.Namespace, out: Path) -> int:
    from rlar.reporting.competition import competition_table, load_competition, plot_competition, table_markdown

    try:
        frame = load_competition([Path(p) for p in args.run_dirs])
    except FileNotFoundError as err:
        raise ConfigError("RUN_DIR", str(err)) from None
    plot_competition(frame, out)
    table = out.with_suffix(".md")
    table.write_text(table_markdown(competition_table(frame)) + "\n")
    print(f"{out}\n{table} ({frame['run'].nunique()} run(s))")
    return 0
