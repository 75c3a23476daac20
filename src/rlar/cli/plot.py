"""``rlar plot``: training curves of one or more run folders in one PNG.

Examples::

    rlar plot runs/phantom/rlar/fold_0 --out rlar_curves.png
    rlar plot runs/rlar/fold_0 runs/vanilla_mtl/fold_0 --labels RLAR "vanilla MTL" --out compare.png

Panels: training losses (total, seg, cls, rad), the cosine between the tasks' gradient directions at z (with 0
and each RLAR run's tau), validation Dice and macro-F1 (best checkpoint starred) and the learning rate.
"""

from __future__ import annotations

import argparse
from pathlib import Path


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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rlar.reporting.curves import plot_runs

    written = plot_runs([Path(p) for p in args.run_dirs], Path(args.out), labels=args.labels)
    print(written)
    return 0
