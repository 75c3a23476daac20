"""How far each training augmentation moves each of the 13 radiomics features, in units of the dataset SD.

The guidance loss L_rad asks h_tirads to match features computed on the un-augmented image. This script takes
the network-resolution images (the dataset's uint8 cache, DDTI when present, else the phantom), computes the 13
features of every annotated image with ``rlar.radiomics.extract_features``, then applies one augmentation at a
time (probability 1, its shipped range) and reports, per feature, the median over images of
|f(augmented) - f(original)| / SD(f over the dataset). The last rows apply the shipped default augmentation
(``AugmentOptions()``): "default, all" to every sample as if targets were ignored, and "default, kept" only to the
samples whose target the default policy keeps (``has_radiomics`` still True after augmentation): that row is the
agreement that the guidance loss actually sees. It also times ``extract_features`` in wall and process CPU time
(the cost of recomputing targets on augmented batches instead; CPU time is what load from other processes on a
shared machine barely disturbs).

    python benchmarks/radiomics_augmentation.py                 # DDTI at ../shared/data/ddti if present
    python benchmarks/radiomics_augmentation.py --source phantom --n-images 120
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rlar.data.augment import AugmentOptions, BatchAugmenter
from rlar.data.dataset import ThyroidDataset, collate
from rlar.data.sources import open_source
from rlar.errors import DataError
from rlar.radiomics import FEATURE_NAMES, extract_features

DDTI_DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ddti"
OFF = {"flip_prob": 0.0, "affine_prob": 0.0, "brightness_prob": 0.0, "contrast_prob": 0.0, "gamma_prob": 0.0,
       "speckle_prob": 0.0, "targets": "ignore"}
#: One augmentation at a time, at probability 1 and its shipped range (contrast/translation: the option's range).
SINGLE: dict[str, dict[str, object]] = {
    "flip": {"flip_prob": 1.0},
    "rotation +-10 deg": {"affine_prob": 1.0, "scale_range": (1.0, 1.0)},
    "scale 0.9-1.1": {"affine_prob": 1.0, "max_rotation_deg": 0.0},
    "translate +-5%": {"affine_prob": 1.0, "max_rotation_deg": 0.0, "scale_range": (1.0, 1.0), "max_translate": 0.05},
    "brightness +-0.05": {"brightness_prob": 1.0},
    "contrast 0.9-1.1": {"contrast_prob": 1.0},
    "gamma 0.8-1.25": {"gamma_prob": 1.0},
    "speckle sigma<=0.1": {"speckle_prob": 1.0},
}
SHORT = {"cystic_fraction": "cyst", "intensity_entropy": "entr", "glcm_contrast": "gcon", "glcm_homogeneity": "ghom",
         "echo_ratio": "eRat", "echo_contrast": "eCon", "taller_than_wide": "ttw", "elongation": "elon",
         "circularity": "circ", "solidity": "soli", "margin_sharpness": "mShp", "margin_irregularity": "mIrr",
         "bright_focus_fraction": "foci"}


def features(image: torch.Tensor, mask: torch.Tensor, item: str) -> np.ndarray | None:
    """The 13 features of one (1, H, W) image/mask pair, or None when they are undefined (e.g. empty mask)."""
    try:
        return extract_features(image[0].double().numpy(), mask[0].numpy() > 0.5, item=item)
    except DataError:
        return None


def open_dataset(args: argparse.Namespace) -> ThyroidDataset:
    if args.source == "ddti" or (args.source == "auto" and (Path(args.root) / "1.xml").is_file()):
        source = open_source("ddti", args.root)
    else:
        source = open_source("phantom", None, n_cases=args.n_images, image_size=(args.size * 2, args.size * 2))
    ids = [info.image_id for info in source.infos if info.has_mask][: args.n_images]
    return ThyroidDataset(source, ids, image_size=(args.size, args.size), progress=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=("auto", "ddti", "phantom"), default="auto")
    parser.add_argument("--root", default=str(DDTI_DEFAULT))
    parser.add_argument("--n-images", type=int, default=200)
    parser.add_argument("--size", type=int, default=128, help="network input side (pixels)")
    parser.add_argument("--epochs", type=int, default=1, help="augmented draws per image and transform")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    ds = open_dataset(args)
    batch = collate([ds[i] for i in range(len(ds))])
    base: dict[int, np.ndarray] = {}
    times: list[float] = []
    cpu_times: list[float] = []
    for i in tqdm(range(len(ds)), desc="features (original)", leave=False):
        start, cpu = time.perf_counter(), time.process_time()
        f = features(batch["image"][i], batch["mask"][i], batch["image_id"][i])
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu)
        if f is not None:
            base[i] = f
    keep = sorted(base)
    sd = np.std(np.stack([base[i] for i in keep]), axis=0, ddof=1)
    print(f"source {ds.source.name}: {len(keep)} annotated images with defined features at {args.size} px "
          f"({len(ds.skipped)} skipped at decoding)")
    wall, cpu_s = statistics.median(times), statistics.median(cpu_times)
    print(f"extract_features: median {1000 * wall:.1f} ms wall, {1000 * cpu_s:.1f} ms CPU per image -> "
          f"{16 * cpu_s:.2f} CPU-s per batch of 16 to recompute targets on augmented images")

    # Every sample carries a target for the policy rows (the dataset here has no radiomics table).
    batch["has_radiomics"] = torch.ones(len(ds), dtype=torch.bool)
    rows: dict[str, list[np.ndarray]] = {}
    configs = {name: AugmentOptions(**{**OFF, **opts}) for name, opts in SINGLE.items()}  # type: ignore[arg-type]
    configs["default, all"] = AugmentOptions(targets="ignore")
    configs["default, kept"] = AugmentOptions()
    for name, options in configs.items():
        deltas: list[np.ndarray] = []
        for epoch in range(args.epochs):
            out = BatchAugmenter(options, seed=0)(batch, epoch)
            for i in tqdm(keep, desc=name, leave=False):
                if name == "default, kept" and not bool(out["has_radiomics"][i]):
                    continue
                f = features(out["image"][i], out["mask"][i], batch["image_id"][i])
                if f is not None:
                    deltas.append(np.abs(f - base[i]) / sd)
        rows[name] = deltas

    header = f"{'augmentation':<20}{'n':>5} " + " ".join(f"{SHORT[n]:>5}" for n in FEATURE_NAMES) + "   max"
    print("\nmedian |feature(augmented) - feature(original)| / dataset SD")
    print(header)
    print("-" * len(header))
    for name, deltas in rows.items():
        if not deltas:
            print(f"{name:<20}{0:>5}  (no sample)")
            continue
        med = np.median(np.stack(deltas), axis=0)
        print(f"{name:<20}{len(deltas):>5} " + " ".join(f"{v:5.2f}" for v in med) + f" {med.max():5.2f}")
    kept = rows["default, kept"]
    if kept:
        worst = float(np.max(np.stack(kept)))
        print(f"\ndefault policy, samples that keep their target: largest change of any feature {worst:.2e} SD "
              f"({len(kept)} of {len(keep) * args.epochs} samples kept their target)")
    print("features: " + ", ".join(f"{SHORT[n]}={n}" for n in FEATURE_NAMES))


if __name__ == "__main__":
    main()
