"""Training images per second: the full loop vs the bare model forward + backward on the same batches.

Full loop: DataLoader over the uint8-cached ThyroidDataset -> ``dataset.collate_fn`` (collate + batch
augmentation) -> forward of the multitask network (``--backbone``, default the ddti cpu recipe's
efficientnet-lite0) -> MultitaskLoss (seg + cls + rad) -> backward ->
AdamW step. Bare: forward + loss + backward only, on the batches the full loop produced (materialised
beforehand, so no data work is timed). The ratio full / bare says how much the data pipeline and the optimiser
step cost on top of the network (goal >= 0.9). Epochs of the two are interleaved (full, bare, full, bare, ...)
and the medians reported, in wall-clock time and in this process's CPU time (which other processes on a
shared machine barely disturb; with DataLoader workers it leaves out their work), with the share of the full loop's time spent waiting for the next batch
("data wait": loading, collate and augmentation when workers = 0), so that load from other processes on a shared machine hits both alike.

The radiomics targets here are random standardised values for every annotated image (their values do not
change the cost; computing real ones is ``rlar radiomics``' job); under the shipped target policy
(``--targets augmented``) they are shifted with the augmentation as in training, which measures its feature
extraction too. DDTI is used when present, else the phantom.

    python benchmarks/train_throughput.py                       # 128 px, batch 16, threads 1 and 2
    python benchmarks/train_throughput.py --source phantom --threads 1,2 --epochs 3 --workers 0
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from rlar.data.dataset import ThyroidDataset
from rlar.data.labels import LabelSpace
from rlar.data.sources import open_source
from rlar.losses import MultitaskLoss
from rlar.models import build_model
from rlar.radiomics import FEATURE_NAMES, AugmentedTargets, Standardiser
from rlar.tasks import RADIOMICS_DIM

DDTI_DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ddti"


def open_dataset(args: argparse.Namespace, targets_policy: str | None = None) -> ThyroidDataset:
    """The benchmark's training dataset; ``targets_policy`` overrides ``args.targets`` (data.augmentation.targets)."""
    if args.source == "ddti" or (args.source == "auto" and (Path(args.root) / "1.xml").is_file()):
        source = open_source("ddti", args.root)
        space = LabelSpace("ddti")
    else:
        source = open_source("phantom", None, n_cases=args.n_images, image_size=(2 * args.size, 2 * args.size))
        space = LabelSpace("acr")
    ids = [info.image_id for info in source.infos][: args.n_images]
    rng = np.random.default_rng(0)
    annotated = [info.image_id for info in source.infos if info.has_mask and info.image_id in set(ids)]
    targets = pd.DataFrame(rng.standard_normal((len(annotated), RADIOMICS_DIM)), index=annotated,
                           columns=list(FEATURE_NAMES))
    policy = targets_policy or args.targets
    retarget = AugmentedTargets(Standardiser().fit(targets)) if policy == "augmented" else None
    start = time.perf_counter()
    ds = ThyroidDataset(source, ids, image_size=(args.size, args.size), label_space=space, radiomics=targets,
                        augment=True, seed=0, progress=True, augmentation={"targets": policy}, retarget=retarget)
    cached = ds.cached_images
    size_mib = 0.0 if cached is None else 2 * cached.numel() / 2**20  # images + masks, one byte per pixel each
    print(f"source {source.name}: {len(ds)} images decoded once into {size_mib:.1f} MiB uint8 (images + masks) "
          f"in {time.perf_counter() - start:.1f} s ({len(ds.skipped)} skipped)")
    return ds


def make_model(args: argparse.Namespace, num_classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    if args.backbone != "compact":
        # Random weights: the cost of a step does not depend on them (and needs no `pretrained` extra).
        return build_model("multitask", args.backbone, num_classes=num_classes, deep_dim=32)
    channels = tuple(int(c) for c in args.channels.split(","))
    return build_model("multitask", "compact", num_classes=num_classes, deep_dim=32, compact_channels=channels)


def describe_model(args: argparse.Namespace) -> str:
    return f"compact {args.channels}" if args.backbone == "compact" else args.backbone


def full_epoch(ds: ThyroidDataset, model: torch.nn.Module, loss_fn: MultitaskLoss, opt: torch.optim.Optimizer,
               loader: DataLoader, epoch: int, keep: list[dict[str, Any]] | None = None
               ) -> tuple[int, float, float, float]:
    """One timed epoch of the whole loop; returns (images, wall s, process CPU s, wall s waiting for batches).
    ``keep`` collects the batches."""
    ds.set_epoch(epoch)
    n = 0
    start, cpu = time.perf_counter(), time.process_time()
    waited = 0.0
    iterator = iter(loader)
    while True:
        before = time.perf_counter()
        batch = next(iterator, None)
        waited += time.perf_counter() - before
        if batch is None:
            break
        out = model(batch["image"])
        total = torch.stack(list(loss_fn(out, batch).values())).sum()
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        n += batch["image"].shape[0]
        if keep is not None:
            keep.append(batch)
    return n, time.perf_counter() - start, time.process_time() - cpu, waited


def bare_epoch(batches: list[dict[str, Any]], model: torch.nn.Module, loss_fn: MultitaskLoss
               ) -> tuple[int, float, float]:
    """Forward + loss + backward on ready batches (no data work, no optimiser step); (images, wall s, CPU s)."""
    n = 0
    start, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        out = model(batch["image"])
        total = torch.stack(list(loss_fn(out, batch).values())).sum()
        model.zero_grad(set_to_none=True)
        total.backward()
        n += batch["image"].shape[0]
    return n, time.perf_counter() - start, time.process_time() - cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=("auto", "ddti", "phantom"), default="auto")
    parser.add_argument("--root", default=str(DDTI_DEFAULT))
    parser.add_argument("--n-images", type=int, default=400)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--backbone", default="efficientnet-lite0",
                        help="encoder (rlar.models.BACKBONES); the ddti cpu recipe's is efficientnet-lite0")
    parser.add_argument("--channels", default="8,16,32,32", help="compact encoder widths (with --backbone compact)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs of each kind (after one warm-up)")
    parser.add_argument("--threads", default="1,2", help="torch CPU thread counts to compare")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--targets", default="augmented", choices=("augmented", "split", "restrict", "ignore"),
                        help="data.augmentation.targets policy (default: the shipped one)")
    args = parser.parse_args(argv)

    ds = open_dataset(args)
    loss_fn = MultitaskLoss()
    print(f"model: {describe_model(args)} multitask, {args.size} px, batch {args.batch}, "
          f"DataLoader workers {args.workers}")
    print(f"{'threads':>7} {'full img/s':>11} {'bare img/s':>11} {'ratio':>6} {'data wait':>10} "
          f"{'full img/cpu-s':>15} {'bare img/cpu-s':>15} {'cpu ratio':>10}")
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        model = make_model(args, ds.label_space.num_classes if ds.label_space else 2)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loader = DataLoader(ds, batch_size=args.batch, shuffle=True, collate_fn=ds.collate_fn,
                            num_workers=args.workers, drop_last=True, generator=torch.Generator().manual_seed(0))
        batches: list[dict[str, Any]] = []
        full_epoch(ds, model, loss_fn, opt, loader, epoch=0, keep=batches)  # warm-up; its batches feed "bare"
        bare_epoch(batches, model, loss_fn)
        full_rates, bare_rates, wait_shares, full_cpu, bare_cpu = [], [], [], [], []
        for epoch in tqdm(range(1, args.epochs + 1), desc=f"threads {threads}", leave=False):
            n, seconds, cpu, waited = full_epoch(ds, model, loss_fn, opt, loader, epoch)
            full_rates.append(n / seconds)
            full_cpu.append(n / cpu)
            wait_shares.append(waited / seconds)
            n, seconds, cpu = bare_epoch(batches, model, loss_fn)
            bare_rates.append(n / seconds)
            bare_cpu.append(n / cpu)
        full, bare = statistics.median(full_rates), statistics.median(bare_rates)
        wait = statistics.median(wait_shares)
        fcpu, bcpu = statistics.median(full_cpu), statistics.median(bare_cpu)
        print(f"{threads:>7} {full:>11.1f} {bare:>11.1f} {full / bare:>6.2f} {100 * wait:>9.1f}% "
              f"{fcpu:>15.1f} {bcpu:>15.1f} {fcpu / bcpu:>10.2f}")


if __name__ == "__main__":
    main()
