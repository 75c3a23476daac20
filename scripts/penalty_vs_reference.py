"""Per fold of one seed of a grid: does a regularised arm's penalty act, and on what? Prints a Markdown table.

For each fold with both runs finished: the competition probe's channel cosine at a layer (mean over epochs >= 2,
``competition.csv``), the arm's penalty share of the gradient averaged over all steps (mean of the per-epoch
``extra_penalty_share_all_steps`` of ``log.csv``), and validation / test Dice (``metrics.json``). Used for
docs/strategies.md "Five folds at the default" and docs/results/ddti_seeds:

    python scripts/penalty_vs_reference.py runs/ddti_seeds --arm rlar --reference guided_mtl --seed 0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd


def fold_row(run: Path, layer: str) -> tuple[float, float, float, float]:
    """(channel cosine at ``layer``, all-steps penalty share or NaN, val Dice, test Dice) of one finished run."""
    probe = pd.read_csv(run / "competition.csv")
    probe = probe[(probe.layer == layer) & (probe.epoch >= 2)]
    metrics = json.loads((run / "metrics.json").read_text())
    log = pd.read_csv(run / "log.csv")
    share = log["extra_penalty_share_all_steps"].dropna().mean() if "extra_penalty_share_all_steps" in log else np.nan
    return float(probe.chan_cos_mean.mean()), float(share), metrics["val"]["dice"], metrics["test"]["dice"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid", type=Path, help="grid folder (<arm>/seed<k>/fold<i>/)")
    parser.add_argument("--arm", default="rlar")
    parser.add_argument("--reference", default="guided_mtl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layer", default="bottleneck", help="probe layer (competition.csv 'layer')")
    args = parser.parse_args(argv)

    print(f"| fold | {args.reference} chan cos ({args.layer}) | {args.arm} chan cos | difference | "
          f"{args.arm} all-steps share | {args.reference} val Dice | {args.arm} val Dice | "
          f"{args.reference} test Dice | {args.arm} test Dice |")
    print("|---|---|---|---|---|---|---|---|---|")
    diffs, shares, val_gaps, test_gaps = [], [], [], []
    folds = sorted(int(p.name[4:]) for p in (args.grid / args.reference / f"seed{args.seed}").glob("fold*"))
    for fold in folds:
        runs = [args.grid / name / f"seed{args.seed}" / f"fold{fold}" for name in (args.reference, args.arm)]
        if not all((run / "metrics.json").is_file() for run in runs):
            continue
        ref, arm = (fold_row(run, args.layer) for run in runs)
        diffs.append(arm[0] - ref[0])
        shares.append(arm[1])
        val_gaps.append(arm[2] - ref[2])
        test_gaps.append(arm[3] - ref[3])
        print(f"| {fold} | {ref[0]:+.4f} | {arm[0]:+.4f} | {arm[0] - ref[0]:+.4f} | {arm[1]:.4f} | {ref[2]:.3f} | "
              f"{arm[2]:.3f} | {ref[3]:.3f} | {arm[3]:.3f} |")
    if not diffs:
        raise SystemExit("no fold with both runs finished")
    sd = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else 0.0
    print(f"\n{len(diffs)} folds: cosine difference mean {np.mean(diffs):+.4f} (sd {sd:.4f}); all-steps share mean "
          f"{np.nanmean(shares):.4f}, min {np.nanmin(shares):.4f}; val Dice gap mean {np.mean(val_gaps):+.4f}, "
          f"test Dice gap mean {np.mean(test_gaps):+.4f}")


if __name__ == "__main__":
    main()
