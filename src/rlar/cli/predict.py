"""``rlar predict``: segment the nodule, predict its TI-RADS category and explain it, for new images.

Examples::

    rlar predict --model runs/ddti/rlar/fold_0 image.png --out pred/          # one run
    rlar predict --model runs/ddti/rlar scans/ --out pred/                    # every fold_* run, ensembled
    rlar predict --model grids/ddti/rlar scans/ --out pred/                   # a grid arm: every seed and fold
    rlar predict image.png --out pred/                                        # the model shipped with rlar
    rlar predict --model best.pt clip.dcm --tta --out pred/                   # multi-frame DICOM, flip TTA

Writes per image a mask PNG, a contour overlay, a JSON report and a self-contained HTML report, plus
``predictions.csv``; unreadable files are listed at the end (and in ``failures.csv``) without stopping the run.
Exit status: 0 all predicted, 1 some inputs failed, 2 nothing could be predicted or a bad model/option.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rlar.cli.common import add_device_argument, add_threads_argument
from rlar.environment import INFERENCE_DEVICE, check_writable, resolve_device, set_cpu_threads
from rlar.errors import ConfigError

#: Inputs listed one per line on the terminal up to this many (a progress bar and the CSV cover larger runs).
_LIST_LIMIT = 20


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict", help="predict mask, TI-RADS category and evidence for new images",
        description="Predict on PNG/JPEG/TIFF/DICOM files or folders (recursively) with a trained model; writes "
                    "masks, overlays, JSON and HTML reports and predictions.csv into --out.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    parser.add_argument("--model", default=None, metavar="MODEL",
                        help="run folder, folder of fold_* runs or grid arm <grid>/<arm>[/seed<k>] (its runs are "
                             "ensembled), a .pt checkpoint, or a shipped-model folder; default: the model shipped "
                             "with rlar")
    parser.add_argument("--out", required=True, help="output folder (refused when it holds files this run would "
                                                     "replace or inputs, unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace earlier outputs in --out (inputs are never written over)")
    parser.add_argument("--folds", default=None, help="comma-separated folds of a folder of fold runs or grid arm "
                                                      "(default: all)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds of a grid arm (default: all)")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="horizontal-flip test-time augmentation (default: as the run's config, section prediction)")
    parser.add_argument("--crop", choices=("auto", "on", "off"), default="auto",
                        help="scan-area crop before resizing (auto: as the training data was cropped)")
    parser.add_argument("--spacing", default=None, metavar="ROW_MM,COL_MM",
                        help="pixel spacing for inputs whose header has none (measurements in mm)")
    parser.add_argument("--max-megapixels", type=float, default=40.0,
                        help="refuse inputs declaring more pixels (all frames) than this, before decoding")
    add_device_argument(parser, INFERENCE_DEVICE)
    add_threads_argument(parser)
    parser.add_argument("--no-report", action="store_true",
                        help="fast path: masks, JSON (category, probabilities, measurements) and predictions.csv only; "
                             "no radiomics evidence, overlay or HTML page")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def parse_folds(text: str | None, option: str = "--folds") -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(option, f"expected comma-separated numbers, got '{text}'") from None


def parse_megapixels(value: float, option: str = "--max-megapixels") -> int:
    """A pixel cap from a megapixel option: a positive finite number (nan and inf are refused, not tracebacks)."""
    import math

    if not math.isfinite(value) or value <= 0:
        raise ConfigError(option, f"must be a positive finite number of megapixels, got {value}")
    return int(value * 1e6)


def parse_spacing(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        row, col = (float(part) for part in text.split(","))
    except ValueError:
        raise ConfigError("--spacing", f"expected ROW_MM,COL_MM (two numbers), got '{text}'") from None
    if not (row > 0 and col > 0):
        raise ConfigError("--spacing", f"spacings must be positive, got '{text}'")
    return row, col


def describe(report: dict[str, Any]) -> str:
    """One terminal line per image."""
    m = report["measurements"]
    size = f" Size {m['width']:.1f} x {m['height']:.1f} {m['unit']} (W x H), taller-than-wide {m['taller_than_wide']:.2f}." if m else ""
    return f"{report['image']}: {report['statement']}{size}"


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rlar.inference.batch import predict_many
    from rlar.inference.predictor import PHANTOM_NOTICE, Predictor

    folds = parse_folds(args.folds)
    seeds = parse_folds(args.seeds, "--seeds")
    spacing = parse_spacing(args.spacing)
    max_pixels = parse_megapixels(args.max_megapixels)
    check_writable(Path(args.out))  # before loading models or reading any image
    set_cpu_threads(args.threads, "--threads")
    crop = {"auto": None, "on": True, "off": False}[args.crop]
    predictor = Predictor.from_run(args.model, folds=folds, seeds=seeds, tta=args.tta,
                                   device=resolve_device(args.device, "--device"), crop=crop, max_pixels=max_pixels,
                                   spacing_mm=spacing)
    print(f"model: {predictor.describe()}; input: {predictor.preprocessing.describe()}", file=sys.stderr)
    if crop is not None and crop != predictor.preprocessing.crop:
        print(f"note: --crop {args.crop} differs from the preprocessing the model was trained with "
              f"({'scan-area crop' if predictor.preprocessing.crop else 'no crop'}): its outputs may be off",
              file=sys.stderr)
    if predictor.trained_on_phantom:
        print(f"warning: {PHANTOM_NOTICE}", file=sys.stderr)
    arguments = {"command": "predict", "inputs": list(args.inputs), "model": args.model, "folds": folds,
                 "seeds": seeds, "tta": predictor.tta, "crop": args.crop, "spacing": args.spacing,
                 "max_megapixels": args.max_megapixels, "device": args.device, "no_report": args.no_report}
    summary = predict_many(predictor, args.inputs, args.out, arguments, progress=not args.no_progress,
                           overwrite=args.overwrite, report=not args.no_report)
    if len(summary.reports) <= _LIST_LIMIT:
        for report in summary.reports:
            print(describe(report))
    found = sum(1 for r in summary.reports if r["nodule_found"])
    print(f"predicted {len(summary.reports)} image(s) with {len(predictor.members)} model(s)"
          f"{' + flip TTA' if predictor.tta else ''}: nodule found in {found}; reports in {args.out}"
          + (f" (table: {summary.csv_path})" if summary.csv_path else ""))
    if summary.ignored:
        print(f"ignored {summary.ignored} file(s) in the folders that are not images (by suffix)")
    if summary.own_outputs:
        print(f"ignored {summary.own_outputs} file(s) named like rlar predict's own outputs (*.mask.png, "
              "*.overlay.png, ...): they are never taken as inputs")
    if summary.failures:
        print(f"could not predict {len(summary.failures)} input(s) (also in {Path(args.out) / 'failures.csv'}):",
              file=sys.stderr)
        for file, reason in summary.failures:
            print(f"  {file}: {reason}", file=sys.stderr)
        return 2 if not summary.reports else 1
    if not summary.reports:
        print("no image found in the inputs", file=sys.stderr)
        return 2
    return 0
