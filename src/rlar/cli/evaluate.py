"""``rlar evaluate``: metrics and per-image predictions of a trained checkpoint on a data source.

Example::

    rlar evaluate --checkpoint runs/rlar/fold_0/checkpoints/best.pt --source ddti --root /data/ddti --out eval/
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

from rlar.cli.common import parse_key_values
from rlar.data.sources import SOURCE_NAMES


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="evaluate a checkpoint on a dataset")
    parser.add_argument("--checkpoint", required=True, help="checkpoint file (best.pt / last.pt)")
    parser.add_argument("--source", choices=SOURCE_NAMES, default=None,
                        help="dataset layout (default: the one the checkpoint was trained on)")
    parser.add_argument("--root", default=None, help="dataset folder (default: the training one)")
    parser.add_argument("--option", action="append", metavar="KEY=VALUE", help="source option (repeatable)")
    parser.add_argument("--splits", default=None, help="split file; with --fold, evaluate that fold's val images")
    parser.add_argument("--fold", type=int, default=None, help="fold of --splits whose 'val' images to evaluate")
    parser.add_argument("--out", default=None, help="folder for predictions.csv, metrics.json and masks/")
    parser.add_argument("--save-masks", action="store_true", help="write predicted masks as PNGs under <out>/masks")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from rlar.data.dataset import ThyroidDataset
    from rlar.data.labels import LabelSpace
    from rlar.data.sources import open_source
    from rlar.data.splits import check_splits, load_splits
    from rlar.errors import ConfigError
    from rlar.evaluation.evaluate import class_names_of, metrics_from_predictions, predict
    from rlar.inference.loading import load_trained_model
    from rlar.training.run import label_space_for, to_jsonable
    from rlar.training.trainer import resolve_device

    device = resolve_device(args.device)
    trained_model = load_trained_model(args.checkpoint, device=device)
    cfg, model = trained_model.config, trained_model.model
    name = args.source or cfg.data.source
    if args.source is None:
        root, options = cfg.data.root, dict(cfg.data.options)
    else:
        root, options = args.root, {}
    options.update(parse_key_values(args.option))
    source = open_source(name, root, **options)

    trained = trained_model.label_space
    label_space: LabelSpace | None = trained
    here = label_space_for(source, trained.task)
    if here.scale != trained.scale:
        warnings.warn(f"the checkpoint predicts {trained.scale}-scale TI-RADS but '{name}' is labelled on the "
                      f"{here.scale} scale; classification metrics are skipped", stacklevel=1)
        label_space = None

    image_ids = None
    if args.splits is not None or args.fold is not None:
        if args.splits is None or args.fold is None:
            raise ConfigError("--splits/--fold", "give both to evaluate one fold's validation images")
        folds = load_splits(args.splits)
        check_splits(folds, source.infos)
        if not 0 <= args.fold < len(folds):
            raise ConfigError("--fold", f"fold {args.fold} does not exist in {args.splits} ({len(folds)} folds)")
        image_ids = folds[args.fold]["val"]

    dataset = ThyroidDataset(source, image_ids, image_size=tuple(cfg.data.image_size), label_space=label_space)
    out = Path(args.out) if args.out is not None else None
    mask_dir = out / "masks" if (out is not None and args.save_masks) else None
    with torch.no_grad():
        frame = predict(model, dataset, batch_size=args.batch_size, device=device, progress=not args.no_progress,
                        output_dir=mask_dir, keep_masks=False)
    class_names = None
    if "pred_class" in frame.columns:
        class_names = class_names_of(dataset, sum(c.startswith("prob_") for c in frame.columns))
    scored = frame if label_space is not None else frame.assign(label=-1)
    metrics: dict[str, Any] = metrics_from_predictions(scored, class_names)
    metrics["checkpoint"] = str(args.checkpoint)
    metrics["source"] = name
    metrics["n_images"] = len(dataset)
    for key, value in metrics.items():
        if isinstance(value, int | float | str):
            print(f"{key:>24}: {value:.4f}" if isinstance(value, float) else f"{key:>24}: {value}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out / "predictions.csv", index=False)
        (out / "metrics.json").write_text(json.dumps(to_jsonable(metrics), indent=1))
        print(f"predictions: {out / 'predictions.csv'}; metrics: {out / 'metrics.json'}")
    return 0
