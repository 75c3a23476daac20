"""``rlar demo``: the paper's comparison in miniature, on the built-in phantom, in a few minutes on a CPU.

Trains vanilla multitask and clinically guided multitask + RLAR on the synthetic thyroid phantom whose masks
and TI-RADS levels come from simulated readers (each image annotated by a randomly chosen reader with its own
contour style and grading noise: the inconsistent supervision the paper is about), then prints one row of
held-out test metrics per method (the checkpoint is chosen on each run's inner validation split, docs/protocol.md).
It ends as a user would go on: the trained RLAR model predicts a few held-out phantom images written as PNG
files, and the demo prints the folder of their reports (HTML, JSON, overlay pictures, predictions.csv).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rlar.cli.common import write_curves
from rlar.runs import CURVES_FILE

DEMO_METHODS: tuple[str, ...] = ("vanilla_mtl", "rlar")
# The run whose model predicts the example images, how many there are, and their folders inside the run folder.
PREDICT_METHOD = "rlar"
N_EXAMPLES = 3
EXAMPLES_DIR = "example_images"
PREDICTIONS_DIR = "predictions"
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
    rows: list[tuple[str, dict[str, Any], float]] = []
    for method in DEMO_METHODS:
        cfg = load_config(path, [f"method={method}", *NOISY_READERS, *args.overrides], size=args.size)
        print(f"== {method}: {cfg.data.options.get('n_cases')} phantom cases, {cfg.optim.epochs} epochs, "
              f"image {cfg.data.image_size[0]}x{cfg.data.image_size[1]}, device {cfg.training.device}")
        start = time.perf_counter()
        run_dir = Path(args.out) / method
        metrics = run_training(cfg, run_dir, progress=not args.no_progress)
        seconds = time.perf_counter() - start
        rows.append((f"{method} vs readers", metrics["test"], seconds))
        rows.append((f"{method} vs truth", evaluate_against_truth(run_dir), seconds))
    print()
    n_test = rows[0][1].get("n_images", "?")
    print(f"held-out test fold ({n_test} images, never used for training or checkpoint selection);")
    print("'readers' = the simulated readers' masks and levels the model was trained on,")
    print("'truth' = the phantom's true masks and ACR levels of the same images")
    print(format_rows(rows))
    curves = write_curves([Path(args.out) / m for m in DEMO_METHODS], Path(args.out) / CURVES_FILE, list(DEMO_METHODS))
    print(f"\nrun folders (config.yaml, splits.json, log.csv, checkpoints, metrics.json): {args.out}/<method>")
    if curves is not None:
        print(f"training curves of both methods (losses, gradient cosine at z, validation Dice/F1): {curves}")
    folder, n_done, failures = predict_examples(Path(args.out) / PREDICT_METHOD, progress=not args.no_progress)
    print(f"\n{PREDICT_METHOD} predictions of {n_done} held-out phantom images (HTML and JSON reports, overlays, "
          f"predictions.csv): {folder}")
    for item, reason in failures:
        print(f"  could not predict {item}: {reason}")
    return 0


def write_example_images(run_dir: Path, n_images: int = N_EXAMPLES) -> list[Path]:
    """The first ``n_images`` test images of the run's fold, written as 8-bit PNGs (what a user would bring).

    Test images were neither trained on nor used to select the checkpoint, so the reports show honest predictions.
    """
    import numpy as np
    from PIL import Image

    from rlar.data.sources import open_source
    from rlar.data.splits import load_splits
    from rlar.runs import CONFIG_FILE, SPLITS_FILE
    from rlar.training.config import load_config

    cfg = load_config(run_dir / CONFIG_FILE)
    source = open_source(cfg.data.source, cfg.data.root, **cfg.data.options)
    position = {info.image_id: index for index, info in enumerate(source.infos)}
    test_ids = load_splits(run_dir / SPLITS_FILE)[cfg.data.fold]["test"][:n_images]
    folder = run_dir / EXAMPLES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for image_id in test_ids:
        pixels = np.clip(np.rint(source[position[image_id]].image * 255.0), 0, 255).astype(np.uint8)
        path = folder / f"{image_id.replace('/', '_')}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def predict_examples(run_dir: Path, progress: bool = False) -> tuple[Path, int, list[tuple[str, str]]]:
    """Predict the example PNGs with the run's model (``Predictor.from_run`` + ``predict_many``).

    Returns the reports folder, how many images were reported and the (file, reason) of any that failed.
    """
    from rlar.inference import Predictor
    from rlar.inference.batch import predict_many

    images = write_example_images(run_dir)
    predictor = Predictor.from_run(run_dir)
    out = run_dir / PREDICTIONS_DIR
    summary = predict_many(predictor, [str(p) for p in images], out, progress=progress, overwrite=True)  # its own outputs
    return out, len(summary.reports), list(summary.failures)


def evaluate_against_truth(run_dir: Path) -> dict[str, Any]:
    """Metrics of the run's chosen checkpoint on its test images, scored against the phantom's ground truth."""
    from rlar.data.dataset import ThyroidDataset
    from rlar.data.sources import open_source
    from rlar.data.splits import load_splits
    from rlar.evaluation.evaluate import evaluate
    from rlar.inference.loading import load_trained_model
    from rlar.runs import METRICS_FILE, SPLITS_FILE

    checkpoint = json.loads((run_dir / METRICS_FILE).read_text())["run"]["checkpoint"]
    trained = load_trained_model(checkpoint)
    cfg = trained.config
    options = {**cfg.data.options, "mask_from": "truth", "label_from": "truth"}
    source = open_source(cfg.data.source, cfg.data.root, **options)
    test_ids = load_splits(run_dir / SPLITS_FILE)[cfg.data.fold]["test"]
    size = (int(cfg.data.image_size[0]), int(cfg.data.image_size[1]))
    dataset = ThyroidDataset(source, test_ids, image_size=size, label_space=trained.label_space)
    return evaluate(trained.model, dataset, progress=False, options=cfg.prediction)


def format_rows(rows: list[tuple[str, dict[str, Any], float]]) -> str:
    """One line per method: test Dice, IoU, HD95, macro-F1, balanced accuracy, QWK, and wall time."""
    header = f"{'method':<22} {'Dice':>6} {'IoU':>6} {'HD95px':>7} {'macroF1':>8} {'balAcc':>7} {'QWK':>6} {'time':>7}"
    lines = [header, "-" * len(header)]
    for method, m, seconds in rows:
        lines.append(
            f"{method:<22} {m.get('dice', float('nan')):>6.3f} {m.get('iou', float('nan')):>6.3f} "
            f"{m.get('hd95_px', float('nan')):>7.2f} {m.get('macro_f1', float('nan')):>8.3f} "
            f"{m.get('balanced_accuracy', float('nan')):>7.3f} {m.get('qwk', float('nan')):>6.3f} {seconds:>6.0f}s"
        )
    return "\n".join(lines)
