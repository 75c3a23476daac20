"""``rlar data summary``: what a dataset holds, and what could not be used and why."""

from __future__ import annotations

import argparse
import dataclasses
import json

from rlar.cli.common import add_source_arguments, source_from_args
from rlar.data.grouping import drop_unreadable, group_source
from rlar.data.labels import SCALE_LEVELS
from rlar.data.summary import format_summary, summarise_source


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="inspect datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    summary = data_sub.add_parser("summary", help="counts per level and descriptor, skipped items with reasons")
    add_source_arguments(summary)
    summary.add_argument(
        "--no-verify", action="store_true",
        help="do not decode every image (faster; decode errors and duplicate images then go unseen)",
    )
    summary.add_argument("--json", metavar="FILE", help="also write the summary as JSON")
    summary.set_defaults(func=run_summary)


def run_summary(args: argparse.Namespace) -> int:
    """Print the counts; unless ``--no-verify``, decode every image once, which both finds unreadable files
    (skipped, with the reason) and compares contents (the split groups merged by identical images)."""
    source = source_from_args(args)
    grouping = None
    if not args.no_verify:
        grouping = group_source(source, by_content=True, progress=True)
        drop_unreadable(source, grouping.unreadable)
    summary = summarise_source(source, grouping)
    print(format_summary(summary, level_order=SCALE_LEVELS.get(source.scale or "", ())))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(dataclasses.asdict(summary), handle, indent=1, default=str)
    return 0
