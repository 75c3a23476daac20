"""``rlar radiomics``: extract the 13 TI-RADS-aligned radiomics features for every image with a mask.

The output file and the cache folder are checked for writing before any image is decoded, so a read-only or
missing place fails in a second with its path named, not after the whole extraction.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from rlar.cli.common import add_source_arguments, check_output_file, source_from_args
from rlar.data.files import probe_folder

#: How many skipped items ``rlar radiomics`` lists by name; the rest are counted by reason.
LISTED_SKIPS = 20


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

    out = check_output_file(args.out)
    cache_dir = Path(args.cache_dir) if args.cache_dir else out.resolve().parent / ".rlar_cache" / "radiomics"
    probe_folder(cache_dir, "--cache-dir")
    source = source_from_args(args)
    frame = compute_targets(source, cache_dir, progress=True)
    frame.to_csv(out, index_label="image_id")
    stats = frame.attrs.get("cache", {})
    print(f"wrote {len(frame)} rows x {frame.shape[1]} features to {out}")
    if stats:
        print(f"cache: {stats.get('hits', 0)} hits, {stats.get('misses', 0)} misses ({cache_dir})")
    skips = list(frame.attrs.get("skips", []))
    if skips:
        print(f"skipped {len(skips)} item(s):")
        for skip in skips[:LISTED_SKIPS]:
            print(f"  {skip.item}: {skip.reason}")
        if len(skips) > LISTED_SKIPS:
            print(f"  ... ({len(skips) - LISTED_SKIPS} more)")
        by_reason = Counter(skip.reason for skip in skips)
        print("skips by reason: " + "; ".join(f"{reason} ({n})" for reason, n in by_reason.most_common()))
    return 0
