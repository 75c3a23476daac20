"""``rlar radiomics``: extract the 13 TI-RADS-aligned features for every image with a mask."""

from __future__ import annotations

import argparse
from pathlib import Path

from rlar.cli.common import add_source_arguments, source_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("radiomics", help="extract the 13 TI-RADS-aligned radiomics features to CSV")
    add_source_arguments(parser)
    parser.add_argument("--out", required=True, help="CSV file to write (one row per image with a mask)")
    parser.add_argument(
        "--cache-dir", default=None, help="feature cache folder (default: .rlar_cache/radiomics beside --out)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rlar.radiomics import compute_targets

    out = Path(args.out)
    cache_dir = Path(args.cache_dir) if args.cache_dir else out.resolve().parent / ".rlar_cache" / "radiomics"
    source = source_from_args(args)
    frame = compute_targets(source, cache_dir, progress=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index_label="image_id")
    stats = frame.attrs.get("cache", {})
    print(f"wrote {len(frame)} rows x {frame.shape[1]} features to {out}")
    if stats:
        print(f"cache: {stats.get('hits', 0)} hits, {stats.get('misses', 0)} misses ({cache_dir})")
    skips = frame.attrs.get("skips", [])
    if skips:
        print(f"skipped {len(skips)} item(s):")
        for skip in skips:
            print(f"  {getattr(skip, 'item', skip)}: {getattr(skip, 'reason', '')}")
    return 0
