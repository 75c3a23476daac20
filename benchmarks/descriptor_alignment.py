"""Are the radiomics features, and a model's h_tirads read-out, aligned with the readers' ACR descriptors?

For each feature and its ACR descriptor, the AUROC of the feature for a binary contrast of descriptor values
(e.g. cystic_fraction for cystic/spongiform/predominantly cystic vs the other compositions), oriented by the
clinically expected direction (0.5 = no information, > 0.5 = separates the groups the expected way round,
< 0.5 = the wrong way round), with a 95% percentile bootstrap CI that resamples patients. The contrasts are
``rlar.radiomics.alignment.CONTRASTS``; docs/radiomics.md "Are the features aligned with the readers'
descriptors?" has the table this prints.

    python benchmarks/descriptor_alignment.py                                   # true masks, DDTI at ../shared/data/ddti
    python benchmarks/descriptor_alignment.py --run runs/ddti/guided_mtl        # + that run's h_tirads read-out
    python benchmarks/descriptor_alignment.py --run grids/ddti/rlar --data-root ../shared/data/ddti --out align.md

Without ``--run``: the features of the true masks of every annotated image of ``--source``/``--root`` (cached with
``rlar.radiomics.compute_targets`` under ``--cache-dir``). With ``--run`` (repeatable; a run folder, an
``rlar train --fold all`` folder or a grid arm): each checkpoint predicts h_tirads on its own held-out test
images (prepared as in training), de-standardised with its standardiser; the table then has three groups:
true-mask features on all images, true-mask features on the read-out's images, and the read-out itself.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="ddti", help="source of the true-mask group (default: ddti)")
    parser.add_argument(
        "--root", default=str(REPO_ROOT.parent / "shared" / "data" / "ddti"), help="its folder (default: DDTI copy)"
    )
    parser.add_argument("--cache-dir", default=".rlar_cache/radiomics", help="radiomics feature cache folder")
    parser.add_argument("--run", action="append", default=[], metavar="RUN",
                        help="run folder / fold_* folder / grid arm whose h_tirads read-out to score (repeatable)")
    parser.add_argument("--data-root", default=None,
                        help="the runs' dataset folder when it moved since training (default: as in their config)")
    parser.add_argument("--no-true-masks", action="store_true",
                        help="with --run: skip the true-mask group over all images of --source")
    parser.add_argument("--n-boot", type=int, default=2000, help="patient bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--device", default="cpu", help="device for the read-out (cpu, cuda)")
    parser.add_argument("--out", default=None, help="also write the Markdown tables to this file")
    parser.add_argument("--csv", default=None, help="also write all rows (with a 'group' column) to this CSV")
    args = parser.parse_args(argv)

    import pandas as pd

    from rlar.data.sources import open_source
    from rlar.data.sources.base import Source
    from rlar.radiomics import FEATURES_VERSION, compute_targets
    from rlar.radiomics.alignment import alignment_table, format_table, readout_features

    start = time.time()
    groups: list[tuple[str, pd.DataFrame]] = []

    def infos_maps(source: Source) -> tuple[dict[str, dict[str, str | None]], dict[str, str]]:
        infos = source.infos
        return ({i.image_id: dict(i.descriptors) for i in infos}, {i.image_id: i.patient_id for i in infos})

    def true_mask_features(source: Source) -> pd.DataFrame:
        frame = compute_targets(source, args.cache_dir, progress=False)
        cache = frame.attrs["cache"]
        print(f"true-mask features of {source.name}: {len(frame)} images, features v{FEATURES_VERSION} "
              f"(cache: {cache['hits']} hits, {cache['misses']} computed; {len(frame.attrs['skips'])} skipped)",
              file=sys.stderr)
        return frame

    if not (args.run and args.no_true_masks):
        source = open_source(args.source, args.root)
        features = true_mask_features(source)
        descriptors, patients = infos_maps(source)
        title = f"true masks, all annotated images of {args.source} (features v{FEATURES_VERSION})"
        groups.append((title, alignment_table(features, descriptors, patients, n_boot=args.n_boot, seed=args.seed)))

    if args.run:
        readout = readout_features(args.run, root=args.data_root, device=args.device)
        print(f"read-out: {len(readout.features)} held-out images from {len(readout.runs)} checkpoint(s): "
              + ", ".join(readout.runs), file=sys.stderr)
        for skip in readout.skipped:
            print(f"skipped {skip}", file=sys.stderr)
        truth = true_mask_features(readout.source)
        ids = [i for i in readout.features.index if i in truth.index]
        groups.append((f"true masks, the same {len(ids)} held-out images",
                       alignment_table(truth.loc[ids], readout.descriptors, readout.patients,
                                       n_boot=args.n_boot, seed=args.seed)))
        groups.append((f"h_tirads read-out (de-standardised) on {len(readout.features)} held-out images",
                       alignment_table(readout.features, readout.descriptors, readout.patients,
                                       n_boot=args.n_boot, seed=args.seed)))

    text = "\n\n".join(format_table(table, title) for title, table in groups)
    print(text)
    print(f"\n{args.n_boot} patient-bootstrap resamples, seed {args.seed}; {time.time() - start:.0f} s", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.csv:
        pd.concat([t.assign(group=title) for title, t in groups]).to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
