"""What keeping the radiomics targets in step with the augmentation costs per training epoch.

Two training datasets over the same images: the shipped policy ``data.augmentation.targets: augmented`` (every
sample fully augmented, each target shifted by the feature change measured on the augmented network input, one
13-feature extraction per targeted sample and step) and the earlier ``split`` policy (half the targeted samples
flip-only, the others' targets switched off; no extraction). Whole training epochs of the guided multitask
network (forward, loss, backward, AdamW step) alternate between the two (split, augmented, split, ...), and the
medians of wall and process-CPU time per epoch are compared. Goal: augmented <= 1.25 x split.

    python benchmarks/augmented_targets_cost.py                 # DDTI if present (all 474 images), else phantom
    python benchmarks/augmented_targets_cost.py --n-images 160 --epochs 2
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

sys_path_dir = Path(__file__).resolve().parent
import sys  # noqa: E402

sys.path.insert(0, str(sys_path_dir))  # a benchmark script beside this one, not a package
from train_throughput import DDTI_DEFAULT, describe_model, full_epoch, make_model, open_dataset  # noqa: E402

from rlar.losses import MultitaskLoss  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=("auto", "ddti", "phantom"), default="auto")
    parser.add_argument("--root", default=str(DDTI_DEFAULT))
    parser.add_argument("--n-images", type=int, default=474)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--channels", default="8,16,32,32")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs of each policy (after one warm-up each)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    policies = ("split", "augmented")
    datasets = {policy: open_dataset(args, policy) for policy in policies}
    n_targets = int(sum(bool(datasets["augmented"][i]["has_radiomics"]) for i in range(len(datasets["augmented"]))))
    print(f"model: {describe_model(args)} multitask (seg + cls + rad), {args.size} px, batch {args.batch}, "
          f"{args.threads} thread(s); {len(datasets['split'])} images, {n_targets} with a radiomics target")
    loss_fn = MultitaskLoss()
    wall: dict[str, list[float]] = {p: [] for p in policies}
    cpu: dict[str, list[float]] = {p: [] for p in policies}
    runs = {}
    for policy in policies:
        ds = datasets[policy]
        model = make_model(args, ds.label_space.num_classes if ds.label_space else 2)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loader = DataLoader(ds, batch_size=args.batch, shuffle=True, collate_fn=ds.collate_fn, drop_last=True,
                            generator=torch.Generator().manual_seed(0))
        full_epoch(ds, model, loss_fn, opt, loader, epoch=0)  # warm-up (and the per-image base features)
        runs[policy] = (ds, model, opt, loader)
    for epoch in tqdm(range(1, args.epochs + 1), desc="epochs", leave=False):
        for policy in policies:
            ds, model, opt, loader = runs[policy]
            _, seconds, process, _ = full_epoch(ds, model, loss_fn, opt, loader, epoch)
            wall[policy].append(seconds)
            cpu[policy].append(process)
    print(f"{'policy':>10} {'wall s/epoch':>13} {'cpu s/epoch':>12}")
    for policy in policies:
        print(f"{policy:>10} {statistics.median(wall[policy]):>13.1f} {statistics.median(cpu[policy]):>12.1f}")
    ratio_wall = statistics.median(wall["augmented"]) / statistics.median(wall["split"])
    ratio_cpu = statistics.median(cpu["augmented"]) / statistics.median(cpu["split"])
    print(f"augmented / split: {ratio_wall:.2f} wall, {ratio_cpu:.2f} CPU time (goal <= 1.25)")


if __name__ == "__main__":
    main()
