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

``--candidates`` scores the alternative definitions tried for the weakest criteria (margins, echogenic foci;
:data:`CANDIDATES`) on the true masks of ``--source``, each against the current feature with a paired patient
bootstrap of the AUROC difference (docs/radiomics.md lists what was tried and adopted).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from rlar.data.sources.base import Source

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Candidate definitions: name -> (current feature it would replace, definition). Computed by candidate_values().
CANDIDATES: dict[str, tuple[str, str]] = {
    "sharp_v1_interior": ("margin_sharpness", "features v1: g_b / (g_b + g_in), g = |Sobel(I_s)| (magnitude)"),
    "sharp_ring_s1": ("margin_sharpness", "g_b / (g_b + g_R): magnitude on the band vs the ring R, I_s sigma 1"),
    "sharp_ring_s2": ("margin_sharpness", "as sharp_ring_s1 with I_s sigma 2"),
    "sharp_ring_s3": ("margin_sharpness", "as sharp_ring_s1 with I_s sigma 3"),
    "sharp_normal_interior": ("margin_sharpness", "e_b / (e_b + g_in), e = |grad(I_s) . n| across the outline"),
    "sharp_normal_ring": ("margin_sharpness", "e_b / (e_b + g_R) (adopted as features v2)"),
    "edge_fraction_p90": ("margin_sharpness", "fraction of the band with e > 90th percentile of g on R"),
    "boundary_cnr_w3": ("margin_sharpness", "|mean_in3 - mean_out3| / pooled std, 3-px bands inside/outside M"),
    "irregularity_blur_0.75": ("margin_irregularity", "margin_irregularity with the outline blurred by sigma 0.75"),
    "irregularity_blur_3": ("margin_irregularity", "margin_irregularity with the outline blurred by sigma 3"),
    "bright_p95": ("bright_focus_fraction", "fraction of M with I > 95th percentile of R"),
    "bright_p99.5": ("bright_focus_fraction", "fraction of M with I > 99.5th percentile of R"),
    "tophat_r3_p99": ("bright_focus_fraction",
                      "fraction of M with white_tophat(I_s, disk(3)) > 99th percentile of the same on R (sigma 1)"),
    "tophat_r3_blobs": ("bright_focus_fraction", "connected regions of the tophat_r3_p99 pixels per 1000 px of M"),
    "tophat_r5_s0.5_p99.5": ("bright_focus_fraction",
                             "as tophat_r3_p99 with disk(5), I_s sigma 0.5 and the 99.5th percentile"),
    "self_z3": ("bright_focus_fraction", "fraction of M more than 3 robust SDs (MAD) above M's own median"),
}


def candidate_values(image: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """The :data:`CANDIDATES` of one image and mask (largest component, default ring and smoothing)."""
    import numpy as np
    from scipy.spatial import ConvexHull
    from skimage import filters, measure, morphology

    from rlar.radiomics.features import CONTOUR_SIGMA, NORMAL_SIGMA, _contour, select_component

    full = select_component(np.asarray(mask, dtype=bool), "largest")
    rows, cols = np.nonzero(full)
    window = (slice(max(rows.min() - 20, 0), rows.max() + 21), slice(max(cols.min() - 20, 0), cols.max() + 21))
    img = np.asarray(image, dtype=np.float64)[window]
    nod, other = full[window], np.asarray(mask, dtype=bool)[window]
    ring = morphology.isotropic_dilation(nod, 10) & ~other
    band = morphology.dilation(nod, morphology.disk(1)) & ~morphology.erosion(nod, morphology.disk(1))
    inside = morphology.erosion(nod, morphology.disk(2))
    inside = inside if inside.any() else nod
    out: dict[str, float] = {}

    def smooth(sigma: float) -> np.ndarray:
        return filters.gaussian(img, sigma=sigma, mode="nearest", preserve_range=True)

    for sigma in (1.0, 2.0, 3.0):
        g = filters.sobel(smooth(sigma))
        if sigma == 1.0:
            out["sharp_v1_interior"] = g[band].mean() / (g[band].mean() + g[inside].mean())
        out[f"sharp_ring_s{sigma:g}"] = g[band].mean() / (g[band].mean() + g[ring].mean())
    sm = smooth(1.0)
    grad_r, grad_c = filters.sobel_h(sm), filters.sobel_v(sm)
    g = np.hypot(grad_r, grad_c)
    soft = filters.gaussian(nod.astype(np.float64), sigma=NORMAL_SIGMA)
    n_r, n_c = filters.sobel_h(soft), filters.sobel_v(soft)
    norm = np.hypot(n_r, n_c)
    across = np.where(norm > 0, np.abs(grad_r * n_r + grad_c * n_c) / np.maximum(norm, 1e-300), 0.0)
    e_b = across[band].mean()
    out["sharp_normal_interior"] = e_b / (e_b + g[inside].mean())
    out["sharp_normal_ring"] = e_b / (e_b + g[ring].mean())
    out["edge_fraction_p90"] = float(np.mean(across[band] > np.percentile(g[ring], 90)))
    inner = nod & ~morphology.isotropic_erosion(nod, 3)
    outer = morphology.isotropic_dilation(nod, 3) & ~other
    pooled = np.sqrt(0.5 * (img[inner].var() + img[outer].var())) + 1 / 255
    out["boundary_cnr_w3"] = abs(img[inner].mean() - img[outer].mean()) / pooled
    for sigma in (0.75, 3.0):
        pad = int(4 * sigma + 0.5) + 1
        perimeter, _, points = _contour(filters.gaussian(np.pad(nod.astype(np.float64), pad), sigma=sigma), pad=False)
        out[f"irregularity_blur_{sigma:g}"] = max(perimeter / ConvexHull(points).area - 1.0, 0.0)
    assert CONTOUR_SIGMA not in (0.75, 3.0)  # the current blur is the feature itself
    values, ring_values = img[nod], img[ring]
    for p in (95.0, 99.5):
        out[f"bright_p{p:g}"] = float(np.mean(values > np.percentile(ring_values, p)))
    tophat = morphology.white_tophat(sm, morphology.disk(3))
    threshold = np.percentile(tophat[ring], 99)
    out["tophat_r3_p99"] = float(np.mean(tophat[nod] > threshold))
    out["tophat_r3_blobs"] = measure.label((tophat > threshold) & nod).max() / nod.sum() * 1000
    tophat5 = morphology.white_tophat(smooth(0.5), morphology.disk(5))
    out["tophat_r5_s0.5_p99.5"] = float(np.mean(tophat5[nod] > np.percentile(tophat5[ring], 99.5)))
    median = np.median(values)
    mad = 1.4826 * np.median(np.abs(values - median)) + 1 / 255
    out["self_z3"] = float(np.mean((values - median) / mad > 3))
    return {k: float(v) for k, v in out.items()}


def score_candidates(source: Source, current: pd.DataFrame, n_boot: int, seed: int) -> str:
    """Markdown table: each candidate's oriented AUROC (patient CI) and its paired difference to the current one."""
    import numpy as np
    import pandas as pd

    from rlar.radiomics.alignment import CONTRASTS, oriented_auroc, paired_difference_ci, patient_bootstrap_ci

    position = {info.image_id: index for index, info in enumerate(source.infos)}
    rows = {}
    for image_id in current.index:
        sample = source[position[image_id]]
        assert sample.mask is not None  # a features row exists only for images with a mask
        rows[image_id] = candidate_values(sample.image, sample.mask)
    frame = pd.DataFrame.from_dict(rows, orient="index")
    lines = ["| candidate | replaces | contrast | AUROC | 95% CI | difference to current (paired 95% CI) | definition |",
             "|---|---|---|---|---|---|---|"]
    for name, (replaces, definition) in CANDIDATES.items():
        contrast = next(c for c in CONTRASTS if c.feature == replaces)  # the feature's first (headline) contrast
        labels = {i: source.infos[position[i]].descriptors.get(contrast.descriptor) for i in frame.index}
        ids = [i for i, v in labels.items() if v in contrast.positive or v in contrast.negative]
        y = np.array([labels[i] in contrast.positive for i in ids])
        patients = [source.infos[position[i]].patient_id for i in ids]
        x = frame.loc[ids, name].to_numpy()
        auroc = oriented_auroc(y, x, contrast.direction)
        low, high = patient_bootstrap_ci(y, x, patients, contrast.direction, n_boot, seed)
        diff, d_low, d_high = paired_difference_ci(y, current.loc[ids, replaces].to_numpy(), x, patients,
                                                   contrast.direction, n_boot, seed)
        lines.append(f"| `{name}` | `{replaces}` | {contrast.descriptor}: {'/'.join(contrast.positive)} vs "
                     f"{'/'.join(contrast.negative)} | {auroc:.3f} | {low:.3f}-{high:.3f} | {diff:+.3f} "
                     f"({d_low:+.3f}..{d_high:+.3f}) | {definition.replace('|', chr(92) + '|')} |")
    return "\n".join(lines)


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
    parser.add_argument("--candidates", action="store_true",
                        help="also score the candidate definitions tried for margins and echogenic foci (slow)")
    parser.add_argument("--out", default=None, help="also write the Markdown tables to this file")
    parser.add_argument("--csv", default=None, help="also write all rows (with a 'group' column) to this CSV")
    args = parser.parse_args(argv)

    import pandas as pd

    from rlar.data.sources import open_source
    from rlar.inference.readout import readout_features
    from rlar.radiomics import FEATURES_VERSION, compute_targets
    from rlar.radiomics.alignment import alignment_table, format_table

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
    if args.candidates:
        source = open_source(args.source, args.root)
        text += (f"\n\n**candidate definitions on the true masks of {args.source}, against features "
                 f"v{FEATURES_VERSION}**\n\n" + score_candidates(source, true_mask_features(source), args.n_boot,
                                                                  args.seed))
    print(text)
    print(f"\n{args.n_boot} patient-bootstrap resamples, seed {args.seed}; {time.time() - start:.0f} s", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.csv:
        pd.concat([t.assign(group=title) for title, t in groups]).to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
