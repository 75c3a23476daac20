"""``rlar evaluate``: metrics and per-image predictions of a trained checkpoint, on images it was not trained on.

By default it scores the run's held-out **test** images of the checkpoint's fold, read from the run's
``splits.json`` (``{"train", "val", "test"}`` per fold). ``--subset val`` scores the selection images instead;
``--all-images`` scores every image of the source and warns when that includes training images. ``--root`` needs
``--source`` (a root alone would silently be ignored). A multiclass model is also scored low vs high risk
(``binary_*`` metrics). ``predictions.csv`` has the columns of a run's ``predictions_test.csv``.

The model's stored preprocessing (:mod:`rlar.training.preprocessing`) is what it sees: on its own training source,
with the training options, the images are prepared exactly as in training (the numbers equal the run's test
metrics); on any other source (or other options) each image is decoded uncropped and predicted as ``rlar predict``
predicts the same file (:mod:`rlar.inference.sources`), the command says so once, and masks are scored at the
images' own resolution. The work is done by :mod:`rlar.reporting.evaluate_model`; this module parses the arguments,
calls it and prints. Examples::

    rlar evaluate --model runs/ddti/rlar/fold_0 --out eval/                     # the run's test images
    rlar evaluate --model best.pt --splits splits.json --fold 0 --subset val
    rlar evaluate --model best.pt --source folder --root my_images --all-images --overlays --confusion-matrix --out eval/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from rlar.cli.common import add_device_argument, parse_key_values
from rlar.data.sources import source_names
from rlar.environment import DEFAULT_DEVICE
from rlar.errors import ConfigError
from rlar.prediction import MaskPostprocess

if TYPE_CHECKING:
    from rlar.reporting.evaluate_model import EvaluationRequest

SUBSETS: tuple[str, ...] = ("test", "val", "train")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="evaluate a checkpoint on its held-out images",
                                   description="Score a checkpoint on its run's held-out test images (default), "
                                               "another subset, or every image of a source.")
    parser.add_argument("--model", required=True, metavar="RUN_OR_CHECKPOINT",
                        help="run folder or checkpoint file (best.pt / last.pt), as for `rlar predict --model`")
    parser.add_argument("--source", choices=source_names(), default=None,
                        help="dataset layout (default: the one the checkpoint was trained on)")
    parser.add_argument("--root", default=None, help="dataset folder; needs --source")
    parser.add_argument("--option", action="append", metavar="KEY=VALUE", help="source option (repeatable)")
    parser.add_argument("--splits", default=None, help="split file (default: splits.json of the checkpoint's run)")
    parser.add_argument("--fold", type=int, default=None, help="fold of the split (default: the checkpoint's fold)")
    parser.add_argument("--subset", choices=SUBSETS, default="test", help="which side of the fold to score")
    parser.add_argument("--all-images", action="store_true",
                        help="score every image of the source (includes training images when it is the training source)")
    parser.add_argument("--out", default=None, help="folder for predictions.csv, metrics.json, masks/, overlays/")
    parser.add_argument("--save-masks", action="store_true", help="write predicted masks as PNGs under <out>/masks")
    parser.add_argument("--overlays", action="store_true",
                        help="write predicted (yellow) and true (cyan) contours on each image under <out>/overlays")
    parser.add_argument("--confusion-matrix", action="store_true", help="write <out>/confusion_matrix.png")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="horizontal-flip test-time augmentation (default: as the run's config, section prediction)")
    parser.add_argument("--postprocess", choices=get_args(MaskPostprocess), default=None,
                        help="mask region clean-up (default: as the run's config, section prediction)")
    parser.add_argument("--batch-size", type=int, default=16)
    add_device_argument(parser, DEFAULT_DEVICE)
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def _check_arguments(args: argparse.Namespace) -> None:
    if args.root is not None and args.source is None:
        raise ConfigError("--root", "give --source too (which layout the folder has); without it the checkpoint's "
                                    "training source would be used and --root ignored")
    if args.all_images and (args.splits is not None or args.fold is not None):
        raise ConfigError("--all-images", "scores every image; it cannot be combined with --splits/--fold")
    if (args.overlays or args.confusion_matrix or args.save_masks) and args.out is None:
        raise ConfigError("--out", "--overlays, --confusion-matrix and --save-masks write files: give --out")
    if args.batch_size < 1:
        raise ConfigError("--batch-size", "must be >= 1")


def _request(args: argparse.Namespace, out: Path | None) -> EvaluationRequest:
    """The library's request from the parsed arguments (``out``: the checked output folder)."""
    from rlar.reporting.evaluate_model import EvaluationRequest

    return EvaluationRequest(
        model=args.model, source=args.source, root=args.root, options=parse_key_values(args.option),
        splits=args.splits, fold=args.fold, subset=args.subset, all_images=args.all_images, tta=args.tta,
        postprocess=args.postprocess, batch_size=args.batch_size, device=args.device, progress=not args.no_progress,
        mask_dir=out / "masks" if (out is not None and args.save_masks) else None, keep_masks=args.overlays,
    )


def same_root(a: str | Path | None, b: str | Path | None) -> bool:
    """Whether two dataset roots name one folder: :func:`rlar.reporting.evaluate_model.same_root` (imported when
    called, so that building this command's parser does not load the evaluation library and torch)."""
    from rlar.reporting.evaluate_model import same_root as same_folder

    return same_folder(a, b)


def _print_metrics(metrics: dict[str, Any]) -> None:
    """One line per scalar metric or note (floats to 4 decimals)."""
    for key, value in metrics.items():
        if isinstance(value, int | float | str):
            print(f"{key:>24}: {value:.4f}" if isinstance(value, float) else f"{key:>24}: {value}")


def run(args: argparse.Namespace) -> int:
    """Score the model as the arguments say, print the metrics and write the requested files under ``--out``."""
    from rlar.reporting.evaluate_model import (
        CONFUSION_MATRIX_PNG,
        check_out_folder,
        evaluate_trained_model,
        write_confusion_matrix,
        write_overlays,
        write_tables,
    )

    _check_arguments(args)
    out = check_out_folder(args.out)  # before any model or image is loaded
    result = evaluate_trained_model(_request(args, out), note=lambda line: print(line, file=sys.stderr))
    _print_metrics(result.metrics)
    if out is None:
        return 0
    predictions, metrics = write_tables(result, out)
    print(f"predictions: {predictions}; metrics: {metrics}")
    if args.overlays and result.has_masks:
        n = write_overlays(result.frame, result.dataset, out / "overlays")
        print(f"overlays (yellow: predicted, cyan: reference): {n} images in {out / 'overlays'}")
    if args.confusion_matrix:
        if write_confusion_matrix(result, out / CONFUSION_MATRIX_PNG) is not None:
            print(f"confusion matrix: {out / CONFUSION_MATRIX_PNG}")
        else:
            print("no confusion matrix: no labelled image or no classifier", file=sys.stderr)
    return 0
