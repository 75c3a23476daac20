"""Parameter counts and CPU training-step time of multitask networks on different backbones.

One step = forward + MultitaskLoss + backward (no optimiser), on a batch of random grey images with masks, labels
and radiomics targets. Prints the parameter count (whole network and encoder), the FLOPs of one forward pass (counted by
``torch.utils.flop_counter``, independent of machine load; the backward is not counted because torch 2.13's counter
ignores ``groups`` in the convolution backward and so overcounts depthwise networks) and the median step time over
``--repeats`` after ``--warmup`` steps; repeats are interleaved across backbones so that load from other processes on a shared machine
hits each alike.

    python benchmarks/pretrained_encoder.py --batch 16 --size 128 --threads 2 --repeats 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from rlar.losses import MultitaskLoss
from rlar.models import BACKBONES, build_model
from rlar.tasks import RADIOMICS_DIM

#: label -> (backbone, options)
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "compact": ("compact", {}),
    "efficientnet-lite0 (pretrained)": ("efficientnet-lite0", {"pretrained": True}),
}


def make_batch(batch: int, size: int, num_classes: int) -> dict[str, torch.Tensor]:
    """A batch with every target present (the most expensive case for the losses)."""
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.rand(batch, 1, size, size, generator=g),
        "mask": (torch.rand(batch, 1, size, size, generator=g) > 0.7).float(),
        "has_mask": torch.ones(batch, dtype=torch.bool),
        "label": torch.randint(0, num_classes, (batch,), generator=g),
        "radiomics": torch.randn(batch, RADIOMICS_DIM, generator=g),
        "has_radiomics": torch.ones(batch, dtype=torch.bool),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--classes", type=int, default=6)
    parser.add_argument("--backbone", action="append", default=None,
                        help=f"extra backbone to time with default options (from {list(BACKBONES)})")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    configs = dict(CONFIGS)
    for name in args.backbone or []:
        configs[name] = (name, {})
    batch = make_batch(args.batch, args.size, args.classes)
    loss_fn = MultitaskLoss()
    models = {}
    for label, (backbone, options) in configs.items():
        torch.manual_seed(0)
        models[label] = build_model("multitask", backbone, num_classes=args.classes, **options).train()

    def step(model: torch.nn.Module) -> float:
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        sum(loss_fn(model(batch["image"]), batch).values()).backward()
        return time.perf_counter() - start

    flops = {}
    for label, model in models.items():
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(batch["image"])
        flops[label] = counter.get_total_flops()
        for _ in range(args.warmup):
            step(model)
    times: dict[str, list[float]] = {label: [] for label in models}
    for _ in tqdm(range(args.repeats), desc="repeats"):
        for label, model in models.items():
            times[label].append(step(model))

    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.threads} thread(s), "
          f"batch {args.batch} x 1 x {args.size} x {args.size}, median of {args.repeats} (after {args.warmup} warm-up)")
    print(f"{'backbone':34s} {'params':>11s} {'encoder':>11s} {'fwd GFLOP':>11s} {'fwd+bwd s':>10s} {'img/s':>7s}")
    for label, model in models.items():
        total = sum(p.numel() for p in model.parameters())
        encoder = sum(p.numel() for p in model.encoder.parameters())
        med = statistics.median(times[label])
        print(f"{label:34s} {total:11,d} {encoder:11,d} {flops[label] / 1e9:11.1f} {med:10.3f} "
              f"{args.batch / med:7.1f}")


if __name__ == "__main__":
    main()
