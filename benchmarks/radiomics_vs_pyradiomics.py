"""Time our 13-feature extraction against pyradiomics computing the overlapping (equivalent) features.

Both run on the same images and masks, decoded into memory beforehand (pyradiomics' SimpleITK wrapping is done
before its timer too): only feature extraction is timed. Also reports the largest relative difference between
the two on the equivalent features, as a sanity check of the comparison.

    python benchmarks/radiomics_vs_pyradiomics.py                      # DDTI at ../shared/data/ddti
    python benchmarks/radiomics_vs_pyradiomics.py --limit 50
    python benchmarks/radiomics_vs_pyradiomics.py --source folder --root /data/my_images

Needs the test extra (pyradiomics, SimpleITK): pip install -e '.[test]'.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="ddti", help="source name (see rlar.data.sources.SOURCES)")
    parser.add_argument(
        "--root", default=str(REPO_ROOT.parent / "shared" / "data" / "ddti"), help="dataset folder (default: DDTI copy)"
    )
    parser.add_argument("--limit", type=int, default=None, help="use at most this many images with a mask")
    args = parser.parse_args(argv)

    from rlar.data.sources import open_source
    from rlar.errors import DataError
    from rlar.radiomics import FEATURE_NAMES, RadiomicsParams, extract_features
    from rlar.radiomics.features import select_component
    from rlar.radiomics.reference import PYRADIOMICS_EQUIVALENTS, make_extractor, to_sitk

    params = RadiomicsParams()
    source = open_source(args.source, args.root)
    indices = [i for i, info in enumerate(source.infos) if info.has_mask][: args.limit]

    # Decode everything first: neither timer includes JPEG decoding or polygon filling.
    samples = []
    for index in tqdm(indices, desc="decoding", unit="img"):
        try:
            sample = source[index]
        except DataError as err:
            print(f"skip {err}", file=sys.stderr)
            continue
        if sample.mask is not None and sample.mask.any() and not sample.mask.all():
            samples.append((sample.image_id, sample.image, sample.mask))
    if not samples:
        print("no usable image with a mask", file=sys.stderr)
        return 1
    # pyradiomics describes the mask it is given: give it the component our features describe, pre-wrapped.
    sitk_inputs = [to_sitk(image, select_component(mask, params.component)) for _, image, mask in samples]
    extractor = make_extractor(params)

    ours = np.empty((len(samples), len(FEATURE_NAMES)))
    start = time.perf_counter()
    for k, (image_id, image, mask) in enumerate(samples):
        ours[k] = extract_features(image, mask, params, item=image_id)
    ours_s = time.perf_counter() - start

    names = list(PYRADIOMICS_EQUIVALENTS)
    keys = [f"original_{cls}_{feat}" for cls, feat in PYRADIOMICS_EQUIVALENTS.values()]
    theirs = np.empty((len(samples), len(names)))
    start = time.perf_counter()
    for k, (image_itk, mask_itk) in enumerate(sitk_inputs):
        result = extractor.execute(image_itk, mask_itk, label=1)
        theirs[k] = [float(result[key]) for key in keys]
    theirs_s = time.perf_counter() - start

    ours_overlap = ours[:, [FEATURE_NAMES.index(n) for n in names]]
    rel = np.abs(ours_overlap - theirs) / np.maximum(np.abs(theirs), 1e-12)
    pixels = int(sum(mask.sum() for _, _, mask in samples))
    print(f"source {args.source} at {args.root}: {len(samples)} images with a mask ({pixels} nodule pixels)")
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"ours, all 13 features:                {ours_s:8.3f} s  ({1000 * ours_s / len(samples):7.2f} ms/img)")
    print(
        f"pyradiomics, {len(names)} equivalent features:  {theirs_s:8.3f} s  "
        f"({1000 * theirs_s / len(samples):7.2f} ms/img)"
    )
    print(f"ratio pyradiomics / ours: {theirs_s / ours_s:.2f}")
    worst = {name: float(rel[:, j].max()) for j, name in enumerate(names)}
    print("max relative difference on equivalent features: " + ", ".join(f"{n} {v:.1e}" for n, v in worst.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
