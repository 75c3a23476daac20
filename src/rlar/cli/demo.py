"""``rlar demo``: the paper's comparison in miniature, on the built-in phantom, in a few minutes on a CPU.

Trains vanilla multitask and clinically guided multitask + RLAR on the synthetic thyroid phantom whose masks
and TI-RADS levels come from simulated readers (each image annotated by a randomly chosen reader with its own
contour style and grading noise: the inconsistent supervision the paper is about), then prints one row of
validation metrics per method.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rlar.cli.common import write_curves

DEMO_METHODS: tuple[str, ...] = ("vanilla_mtl", "rlar")
# Simulated annotator noise: every image's mask and level come from one randomly drawn reader of the panel.
NOISY_READERS: tuple[str, ...] = ("data.options.mask_from=random_reader", "data.options.label_from=random_reader")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="train vanilla multitask and RLAR on the synthetic phantom and compare them"
    )
    parser.add_argument("--out", default="runs/demo", help="folder for the two runs (default: runs/demo)")
    parser.add_argument("--size", default="cpu", help="config size (cpu: minutes on 2 cores; paper: GPU)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override applied to both runs, e.g. --set optim.epochs=2")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rlar.training.config import find_config, load_config
    from rlar.training.run import run_training

    path, _ = find_config("phantom")
    rows = []
    for method in DEMO_METHODS:
        cfg = load_config(path, [f"method={method}", *NOISY_READERS, *args.overrides], size=args.size)
        print(f"== {method}: {cfg.data.options.get('n_cases')} phantom cases, {cfg.optim.epochs} epochs, "
              f"image {cfg.data.image_size[0]}x{cfg.data.image_size[1]}, device {cfg.training.device}")
        start = time.perf_counter()
        run_dir = Path(args.out) / method
        metrics = run_training(cfg, run_dir, progress=not args.no_progress)
        seconds = time.perf_counter() - start
        rows.append((f"{method} vs readers", metrics, seconds))
        rows.append((f"{method} vs truth", evaluate_against_truth(run_dir), seconds))
    print()
    print("validation fold; 'readers' = the simulated readers' masks and levels the model was trained on,")
    print("'truth' = the phantom's true masks and ACR levels of the same images")
    print(format_rows(rows))
    curves = write_curves([Path(args.out) / m for m in DEMO_METHODS], Path(args.out) / "curves.png", list(DEMO_METHODS))
    print(f"\nrun folders (config.yaml, splits.json, log.csv, checkpoints, metrics.json): {args.out}/<method>")
    if curves is not None:
        print(f"training curves of both methods (losses, gradient cosine at z, validation Dice/F1): {curves}")
    return 0


def evaluate_against_truth(run_dir: Path) -> dict:
    """Metrics of the run's best checkpoint on its validation images, scored against the phantom's ground truth."""
    from rlar.data.dataset import ThyroidDataset
    from rlar.data.sources import open_source
    from rlar.data.splits import load_splits
    from rlar.evaluation.evaluate import evaluate
    from rlar.inference.loading import load_trained_model
    from rlar.training.run import SPLITS_FILE

    trained = load_trained_model(run_dir / "checkpoints" / "best.pt")
    cfg = trained.config
    options = {**cfg.data.options, "mask_from": "truth", "label_from": "truth"}
    source = open_source(cfg.data.source, cfg.data.root, **options)
    val_ids = load_splits(run_dir / SPLITS_FILE)[cfg.data.fold]["val"]
    dataset = ThyroidDataset(source, val_ids, image_size=tuple(cfg.data.image_size), label_space=trained.label_space)
    return evaluate(trained.model, dataset, progress=False)


def format_rows(rows: list[tuple[str, dict, float]]) -> str:
    """One line per method: validation Dice, IoU, HD95, macro-F1, balanced accuracy, QWK, and wall time."""
    header = f"{'method':<22} {'Dice':>6} {'IoU':>6} {'HD95px':>7} {'macroF1':>8} {'balAcc':>7} {'QWK':>6} {'time':>7}"
    lines = [header, "-" * len(header)]
    for method, m, seconds in rows:
        lines.append(
            f"{method:<22} {m.get('dice', float('nan')):>6.3f} {m.get('iou', float('nan')):>6.3f} "
            f"{m.get('hd95_px', float('nan')):>7.2f} {m.get('macro_f1', float('nan')):>8.3f} "
            f"{m.get('balanced_accuracy', float('nan')):>7.3f} {m.get('qwk', float('nan')):>6.3f} {seconds:>6.0f}s"
        )
    return "\n".join(lines)
