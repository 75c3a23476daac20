"""Time one training step (forward + backward, no optimiser) of each multitask strategy on the same model and batch.

Prints seconds (median over repeats, after warm-up) and the ratio to the vanilla multitask step ("sum") measured in
the same run. Repeats are interleaved across methods (sum, rlar, ..., sum, rlar, ...) so that load from other
processes on a shared machine hits every method alike; the ratios are the meaningful output.

    python benchmarks/strategy_step_time.py --size 128 --batch 8 --repeats 8 --warmup 1 --threads 2

Methods: the registry names (sum, rlar, repmtl, pcgrad, cagrad, nashmtl, uncertainty; each with the defaults of its
Options model: for rlar that is the shipped lazy penalty, the exact gradient on one step in ``every_n_steps``, so
read its MEAN column) plus RLAR variants: "rlar-exact" (every_n_steps=1: the exact penalty on every step),
"rlar-tensor-exact" (the same in the full-tensor space), "rlar-trunk" (penalty_through_heads=False, every step:
the penalty shapes only the trunk), "rlar-oneside" (constant_directions=["seg"], every step: the segmentation
direction is a stop-gradient target), "pcgrad-vmap" (parallel_chunk_size=None: torchjd backpropagates all
task rows in one vmapped backward, the default on an accelerator) and "pcgrad-rowwise" (parallel_chunk_size=1:
one backward per task row, the default on a CPU), "rlar-enc3" / "rlar-enc4" (the shipped lazy penalty at an
earlier encoder stage: the cut moves down, so the applied steps backpropagate twice through more of the network).
``--bf16`` also times every method under CPU bfloat16 autocast (rows "<method>+bf16"; ratios still against the
float32 "sum"), the speed half of the CPU-autocast question (docs/strategies.md).
Repeats use consecutive step numbers, so every lazy cycle is timed whole
when --repeats is a multiple of every_n_steps.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings
from typing import Any

import torch
from tqdm import tqdm

from rlar.losses import MultitaskLoss
from rlar.models import build_model
from rlar.strategies import STRATEGIES, get_strategy

VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {name: (name, {}) for name in STRATEGIES}
VARIANTS["rlar-exact"] = ("rlar", {"every_n_steps": 1})
VARIANTS["rlar-tensor-exact"] = ("rlar", {"every_n_steps": 1, "space": "tensor"})
VARIANTS["rlar-trunk"] = ("rlar", {"every_n_steps": 1, "penalty_through_heads": False})
VARIANTS["rlar-oneside"] = ("rlar", {"every_n_steps": 1, "constant_directions": ["seg"]})
VARIANTS["pcgrad-vmap"] = ("pcgrad", {"parallel_chunk_size": None})  # every task row in one vmapped backward
VARIANTS["pcgrad-rowwise"] = ("pcgrad", {"parallel_chunk_size": 1})  # one backward per task row
VARIANTS["rlar-enc3"] = ("rlar", {"layers": ["enc3"]})
VARIANTS["rlar-enc4"] = ("rlar", {"layers": ["enc4"]})
DEFAULT_METHODS = ["sum", "rlar", "rlar-exact", "rlar-tensor-exact", "rlar-trunk", "rlar-oneside", "repmtl", "pcgrad",
                   "cagrad", "nashmtl", "uncertainty"]


def make_batch(batch: int, size: int, num_classes: int, seed: int = 0) -> dict[str, Any]:
    """A synthetic batch with every supervision present (masks, labels, radiomics), like the collated dataset."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centres = torch.randint(size // 4, 3 * size // 4, (batch, 2), generator=g)
    radius = size / 6
    mask = torch.stack([((yy - cy) ** 2 + (xx - cx) ** 2 < radius**2) for cy, cx in centres.tolist()]).float()
    image = (0.5 + 0.2 * torch.randn(batch, size, size, generator=g) - 0.2 * mask).clamp(0, 1)
    return {
        "image": image[:, None], "mask": mask[:, None], "has_mask": torch.ones(batch, dtype=torch.bool),
        "label": torch.randint(0, num_classes, (batch,), generator=g),
        "radiomics": torch.randn(batch, 13, generator=g), "has_radiomics": torch.ones(batch, dtype=torch.bool),
        "image_id": [f"b{i}" for i in range(batch)], "patient_id": [f"p{i}" for i in range(batch)],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128, help="square input side (pixels)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=8,
                        help="timed steps per method (median and mean reported; a multiple of rlar's every_n_steps)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per method first")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch.set_num_threads")
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=sorted(VARIANTS))
    parser.add_argument("--backbone", default="compact")
    parser.add_argument("--bf16", action="store_true", help="also time each method under CPU bf16 autocast")
    args = parser.parse_args(argv)
    if "sum" not in args.methods:
        args.methods = ["sum", *args.methods]  # the reference of the ratios
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="You are solving a parameterized problem")  # cvxpy via NashMTL

    torch.manual_seed(0)
    num_classes = 5
    model = build_model("multitask", args.backbone, num_classes=num_classes)
    model.train()
    loss_fn = MultitaskLoss()
    batch = make_batch(args.batch, args.size, num_classes)
    strategies = {m: get_strategy(VARIANTS[m][0], **VARIANTS[m][1]) for m in args.methods}

    rows = [(m, False) for m in args.methods] + ([(m, True) for m in args.methods] if args.bf16 else [])

    def label(method: str, bf16: bool) -> str:
        return f"{method}+bf16" if bf16 else method

    def run(method: str, bf16: bool, step: int) -> float:
        model.zero_grad(set_to_none=True)
        strategies[method].zero_grad(set_to_none=True)
        start = time.perf_counter()
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=bf16):
            strategies[method].step(model, batch, loss_fn, step)
        return time.perf_counter() - start

    for method, bf16 in rows:
        for i in range(args.warmup):
            run(method, bf16, 100 + i)  # a step past any warm-up of lambda
    times: dict[str, list[float]] = {label(*row): [] for row in rows}
    for r in tqdm(range(args.repeats), desc="repeats", leave=False):
        for method, bf16 in rows:
            times[label(method, bf16)].append(run(method, bf16, 100 + r))

    n_params = sum(p.numel() for p in model.parameters())
    cpu = platform.processor() or platform.machine()
    print(f"model: multitask/{args.backbone} ({n_params / 1e6:.2f} M parameters), input {args.batch}x1x{args.size}x"
          f"{args.size}, CPU threads {args.threads}, torch {torch.__version__}, {cpu}")
    print(f"median of {args.repeats} interleaved repeats after {args.warmup} warm-up steps per method")
    base, base_mean = statistics.median(times["sum"]), statistics.mean(times["sum"])
    print(f"{'method':<14}{'median s':>10}{'mean s':>9}{'min s':>9}{'x sum (median)':>16}{'x sum (mean)':>14}")
    for method in times:
        med, mean = statistics.median(times[method]), statistics.mean(times[method])
        print(f"{method:<14}{med:>10.3f}{mean:>9.3f}{min(times[method]):>9.3f}{med / base:>16.2f}"
              f"{mean / base_mean:>14.2f}")


if __name__ == "__main__":
    main()
