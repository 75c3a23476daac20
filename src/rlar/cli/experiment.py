"""``rlar experiment``: train a grid of methods x folds x seeds (and ablation presets) into one folder.

Examples::

    rlar experiment --config phantom_smoke --out runs/phantom_smoke
    rlar experiment --config ddti --set data.root=../shared/data/ddti --out runs/ddti_grid
    rlar experiment --config ddti --folds 0,1 --methods rlar,vanilla_mtl --seeds 0 --workers 2
    rlar experiment --config ddti --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT --device cuda
    rlar experiment --config ddti --list          # print the runs without training

Rerunning the same command skips finished runs and resumes interrupted ones; see rlar.experiments.runner.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rlar.cli.common import add_device_argument
from rlar.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from rlar.experiments.grid import shipped_grid_names

    parser = subparsers.add_parser(
        "experiment", help="train a grid of methods x folds x seeds (and ablations) for `rlar report`",
        description="Train every run of a grid file (shipped grids: "
        f"{', '.join(shipped_grid_names()) or 'none'}) into OUT/<arm>/seed<k>/fold<j>/.",
    )
    parser.add_argument("--config", required=True, metavar="FILE_OR_NAME", help="grid file or shipped grid name")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override of the base training config for every run (repeatable)")
    parser.add_argument("--methods", default=None, help="comma-separated arms or methods to run (default: all)")
    parser.add_argument("--folds", default=None, help="comma-separated folds to run (default: the grid's)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds to run (default: the grid's)")
    parser.add_argument("--workers", type=int, default=1, help="runs in parallel processes (one per GPU with cuda)")
    parser.add_argument("--shard", default=None, metavar="I/N", help="run every N-th run starting at I (0-based)")
    add_device_argument(parser, None, help="override training.device of every run")
    parser.add_argument("--out", default=None, help="grid folder (default: runs/<grid name>)")
    parser.add_argument("--list", action="store_true", help="print the runs of this invocation and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rlar.experiments.grid import expand, load_grid, parse_int_list, parse_shard, take_shard
    from rlar.experiments.runner import run_grid, summarise

    grid = load_grid(args.config)
    if args.overrides:
        grid = grid.model_copy(update={"overrides": [*grid.overrides, *args.overrides]})
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    shard = parse_shard(args.shard)
    full = expand(grid)
    chosen = expand(grid, methods, parse_int_list(args.folds, "--folds"), parse_int_list(args.seeds, "--seeds"))
    out = Path(args.out) if args.out is not None else Path("runs") / grid.name
    runs = take_shard(chosen.runs(), shard)
    print(f"grid {grid.name}: {len(chosen.arms)} arm(s) x {len(chosen.seeds)} seed(s) x {len(chosen.folds)} fold(s)"
          f" = {len(chosen.runs())} runs" + (f"; shard {args.shard}: {len(runs)} runs" if shard else "")
          + f" -> {out}")
    if args.list:
        for spec in runs:
            print(f"  {spec.rel_dir}")
        return 0
    if not runs:
        raise ConfigError("--shard", f"shard {args.shard} has no runs (the grid has {len(chosen.runs())})")
    results = run_grid(chosen, out, workers=args.workers, shard=shard, device=args.device,
                       progress=not args.no_progress, full=full)
    print(summarise(results))
    bad = [r for r in results if r.status in ("failed", "conflict")]
    for r in bad:
        print(f"  {r.status}: {r.rel_dir}: {r.message}")
    print(f"report: rlar report {out}")
    return 1 if bad else 0
