"""``rlar report``: the tables (Markdown, CSV, LaTeX) and figures of a grid folder written by ``rlar experiment``.

Examples::

    rlar report runs/phantom_smoke
    rlar report runs/ddti_grid --reference guided_mtl --format md,tex --out docs/results/ddti
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="tables and figures of an experiment grid (mean ± std, paired tests)",
        description="Write the paper's Table 1 layout for every table of a grid folder, with paired bootstrap CIs, "
        "Wilcoxon and Nadeau-Bengio tests (Holm-corrected), and the figures beside them.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="grid folder (OUT of rlar experiment)")
    parser.add_argument("--reference", default=None,
                        help="method the main table compares every other with (default: the grid's, vanilla_mtl)")
    parser.add_argument("--format", default="md,csv,tex", help="comma-separated subset of md,csv,tex")
    parser.add_argument("--out", default=None, help="output folder (default: RUN_DIR/report)")
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    parser.add_argument("--no-overlays", action="store_true",
                        help="skip the segmentation overlays (they re-run a model and need the data source)")
    parser.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples (default 2000)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rlar.reporting.report import headline, make_report
    from rlar.reporting.stats import N_BOOTSTRAP

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    n_resamples = args.bootstrap if args.bootstrap is not None else N_BOOTSTRAP
    written, tables = make_report(args.run_dir, args.out, reference=args.reference, formats=formats,
                                  draw_figures=not args.no_figures, overlays=not args.no_overlays,
                                  n_resamples=n_resamples)
    print(headline(tables))
    print(f"wrote {len(written)} files; index: {written[0]}")
    return 0
