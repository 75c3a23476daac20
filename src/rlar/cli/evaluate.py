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
images' own resolution. Examples::

    rlar evaluate --model runs/ddti/rlar/fold_0 --out eval/                     # the run's test images
    rlar evaluate --model best.pt --splits splits.json --fold 0 --subset val
    rlar evaluate --model best.pt --source folder --root my_images --all-images --overlays --confusion-matrix --out eval/
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any, get_args

from rlar.cli.common import parse_key_values
from rlar.data.files import probe_folder
from rlar.data.sources import source_names
from rlar.errors import ConfigError, DataError
from rlar.prediction import MaskPostprocess

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
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
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


def select_images(args: argparse.Namespace, checkpoint: Path, ckpt: dict[str, Any], cfg: Any, source: Any,
                  same_source: bool) -> tuple[list[str] | None, str]:
    """The image ids to score and a description of them."""
    from rlar.data.splits import check_splits, load_splits
    from rlar.runs import SPLITS_FILE, run_dir_of

    if args.all_images:
        if same_source:
            warnings.warn("--all-images on the training source: the scores include the images the model was "
                          "trained and selected on, so they overstate how it does on new images", stacklevel=1)
        return None, f"all {len(source.infos)} images of '{source.name}'"
    if not same_source:
        raise ConfigError("--source", "the run's splits name images of its training source; to score another "
                                      "source, add --all-images (none of its images were used in training)")
    splits = Path(args.splits) if args.splits is not None else run_dir_of(checkpoint) / SPLITS_FILE
    if not splits.is_file():
        raise DataError(splits, "split file not found; give --splits, or --all-images to score every image "
                                "(training images included)")
    folds = load_splits(splits)
    check_splits(folds, source.infos, where=str(splits))
    fold = args.fold if args.fold is not None else ckpt.get("fold", cfg.data.fold)
    if fold is None or not 0 <= int(fold) < len(folds):
        raise ConfigError("--fold", f"fold {fold} does not exist in {splits} ({len(folds)} folds)")
    ids = list(folds[int(fold)][args.subset])
    return ids, f"fold {fold} '{args.subset}' images of {splits} ({len(ids)})"


def write_overlays(frame: Any, dataset: Any, folder: Path) -> int:
    """Predicted (yellow) and true (cyan) contours on each image, drawn by ``rlar predict``'s overlay function:
    at the network's input resolution (``dataset`` given) or the image's own (rows holding ``image`` and
    ``true_mask``, from :func:`rlar.inference.sources.predict_source`)."""
    import numpy as np

    from rlar.inference.outputs import overlay, png_bytes, safe_stem, write_bytes

    folder.mkdir(parents=True, exist_ok=True)
    position = {image_id: i for i, image_id in enumerate(dataset.image_ids)} if dataset is not None else {}
    written = 0
    for _, row in frame.iterrows():
        if dataset is not None:
            item = dataset[position[row["image_id"]]]
            image = item["image"][0].numpy()
            truth = item["mask"][0].numpy() > 0.5 if item["has_mask"] else None
        else:
            image, truth = row["image"], row["true_mask"]
        pred = np.asarray(row["pred_mask"]) if "pred_mask" in row and row["pred_mask"] is not None else None
        write_bytes(folder / f"{safe_stem(row['image_id'])}.png", png_bytes(overlay(image, pred, truth)))
        written += 1
    return written


def same_root(a: str | Path | None, b: str | Path | None) -> bool:
    """Whether two dataset roots name one folder (resolved: ``./x``, ``x/`` and a symlink to it are the same)."""
    if a is None or b is None:
        return a is None and b is None
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except (OSError, RuntimeError):
        return str(a) == str(b)


def source_options_for_model(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """A source's options with its own scan-area crop turned off: the model's preprocessing crops (or not)."""
    from rlar.data.sources import get_source_class

    fields = get_source_class(name).options_model().model_fields
    return {**options, "crop": False} if "crop" in fields else dict(options)


def write_confusion_matrix(matrix: Any, class_names: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    matrix = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(class_names), 1.0 + 0.7 * len(class_names)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(title, fontsize=9)
    peak = matrix.max() if matrix.size else 0
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(int(value)), ha="center", va="center", color="white" if value > peak / 2 else "black")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise DataError(path, f"cannot write ({type(exc).__name__}: {exc})") from None
    finally:
        plt.close(fig)


def check_out_folder(out: str | Path | None) -> Path | None:
    """Create ``--out`` and prove a file can be written in it (:func:`rlar.data.files.probe_folder`), or None."""
    if out is None:
        return None
    try:
        return probe_folder(out, "--out")
    except ConfigError as err:
        raise ConfigError("--out", f"output folder is not writable; {err.reason}") from None


def binary_risk_metrics(table: Any, label_space: Any) -> dict[str, float]:
    """Low- vs high-risk metrics of a multiclass model's per-image table (the high-risk probability is the sum over
    the scale's high-risk levels, as in ``rlar report``'s binary tables), as ``binary_<metric>``; {} for a binary
    model (its own metrics already are these), an unknown scale or no labelled image."""
    import math

    from rlar.reporting.tables import CLS_METRICS, frame_metrics

    if label_space is None or label_space.task != "multiclass":
        return {}
    scores = frame_metrics(table, "binary")  # NaN for every metric when undefined
    if all(math.isnan(scores[m]) for m in CLS_METRICS):
        return {}
    return {f"binary_{m}": scores[m] for m in CLS_METRICS}


def run(args: argparse.Namespace) -> int:
    import torch

    from rlar.data.dataset import ThyroidDataset
    from rlar.data.labels import LabelSpace
    from rlar.data.sources import open_source
    from rlar.evaluation.evaluate import class_names_of, metrics_from_predictions, predict, predictions_table
    from rlar.inference.loading import load_trained_model
    from rlar.inference.sources import predict_source
    from rlar.runs import METRICS_FILE
    from rlar.training.run import label_space_for, to_jsonable, write_text
    from rlar.training.trainer import resolve_device

    _check_arguments(args)
    out = check_out_folder(args.out)  # before any model or image is loaded
    device = resolve_device(args.device)
    trained_model = load_trained_model(args.model, device=device)
    cfg, model = trained_model.config, trained_model.model
    name = args.source or cfg.data.source
    if args.source is None:
        root, options = cfg.data.root, dict(cfg.data.options)
    else:
        root, options = args.root, {}
    options.update(parse_key_values(args.option))
    same_source = name == cfg.data.source and same_root(root, cfg.data.root)
    # The dataset path reproduces training's own test evaluation; any other source or option set gets the
    # model's preprocessing applied to the uncropped pixels (what `rlar predict` does with the same files).
    as_trained = same_source and options == dict(cfg.data.options)
    if not as_trained:
        options = source_options_for_model(name, options)
        print(f"preprocessing: the model's own ({trained_model.prep.describe()}) is applied to the images of "
              f"'{name}' instead of the source's; masks are scored at each image's own resolution", file=sys.stderr)
    source = open_source(name, root, **options)

    trained = trained_model.label_space
    label_space: LabelSpace | None = trained
    here = label_space_for(source, trained.task)
    if here.scale != trained.scale:
        warnings.warn(f"the checkpoint predicts {trained.scale}-scale TI-RADS but '{name}' is labelled on the "
                      f"{here.scale} scale; classification metrics are skipped", stacklevel=1)
        label_space = None

    image_ids, described = select_images(args, trained_model.path, trained_model.checkpoint, cfg, source, same_source)
    print(f"scoring {described}", file=sys.stderr)
    size = trained_model.prep.image_size
    changes = {key: value for key, value in (("tta", args.tta), ("mask_postprocess", args.postprocess))
               if value is not None}
    prediction = cfg.prediction.model_copy(update=changes)
    mask_dir = out / "masks" if (out is not None and args.save_masks) else None
    dataset: ThyroidDataset | None = None
    if as_trained:
        dataset = ThyroidDataset(source, image_ids, image_size=size, label_space=label_space)
        skipped = list(getattr(dataset, "skipped", []))
        with torch.no_grad():
            frame = predict(model, dataset, batch_size=args.batch_size, device=device, progress=not args.no_progress,
                            output_dir=mask_dir, keep_masks=args.overlays, options=prediction)
        n_images = len(dataset)
    else:
        frame, skipped = predict_source([trained_model], source, image_ids, label_space, prediction, device,
                                        batch_size=args.batch_size, progress=not args.no_progress, mask_dir=mask_dir,
                                        keep_masks=args.overlays)
        n_images = len(frame)
    for skip in skipped:
        print(f"skipped {skip.item}: {skip.reason}", file=sys.stderr)
    class_names = None
    if "pred_class" in frame.columns:
        n_classes = sum(c.startswith("prob_") for c in frame.columns)
        class_names = (class_names_of(dataset, n_classes) if dataset is not None
                       else list(trained.class_names))
    scored = frame if label_space is not None else frame.assign(label=-1)
    metrics: dict[str, Any] = metrics_from_predictions(scored, class_names)
    table = predictions_table(scored.drop(columns=[c for c in ("image", "true_mask") if c in scored.columns]),
                              class_names)  # the run folder's per-image format (predictions_test.csv)
    metrics.update(binary_risk_metrics(table, label_space))
    metrics["checkpoint"] = str(trained_model.path)
    metrics["prediction"] = prediction.model_dump()
    metrics["preprocessing"] = trained_model.prep.to_dict()
    metrics["preprocessing_applied"] = "as in training" if as_trained else "the model's, on uncropped source images"
    metrics["source"] = name
    metrics["images"] = described
    metrics["n_images"] = n_images
    for key, value in metrics.items():
        if isinstance(value, int | float | str):
            print(f"{key:>24}: {value:.4f}" if isinstance(value, float) else f"{key:>24}: {value}")
    if out is not None:
        table.to_csv(out / "predictions.csv", index=False)
        write_text(out / METRICS_FILE, json.dumps(to_jsonable(metrics), indent=1))
        print(f"predictions: {out / 'predictions.csv'}; metrics: {out / METRICS_FILE}")
        if args.overlays and "pred_mask" in frame.columns:
            n = write_overlays(frame, dataset, out / "overlays")
            print(f"overlays (yellow: predicted, cyan: reference): {n} images in {out / 'overlays'}")
        if args.confusion_matrix:
            if "confusion_matrix" in metrics and class_names is not None:
                write_confusion_matrix(metrics["confusion_matrix"], list(class_names), out / "confusion_matrix.png",
                                       f"{trained_model.path.name}: {described}")
                print(f"confusion matrix: {out / 'confusion_matrix.png'}")
            else:
                print("no confusion matrix: no labelled image or no classifier", file=sys.stderr)
    return 0
