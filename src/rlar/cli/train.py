"""``rlar train``: train one fold (or every fold) and report its held-out test metrics.

The checkpoint is chosen on an inner validation split of the fold's training images; the test side is scored once,
at the end (docs/protocol.md).

Examples::

    rlar train --config phantom --size cpu                      # shipped config, CPU size
    rlar train --config ddti:paper --set data.root=/data/ddti   # name:size shorthand
    rlar train --config my.yaml --set optim.lr=3e-4 --fold 2 --out runs/x
    rlar train --config phantom --fold all                      # every fold, then a mean/std summary
    rlar train --config ddti --method cls_only --set data.root=/data/ddti   # another method preset
    torchrun --nproc_per_node=2 -m rlar.cli.main train --config ddti --set data.root=...   # data parallel
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rlar.cli.common import add_device_argument, write_curves
from rlar.errors import ConfigError
from rlar.runs import CURVES_FILE, SUMMARY_FILE, train_fold_dir
from rlar.tasks import summary_metrics
from rlar.training.config import RlarConfig, find_config, load_config, shipped_config_names
from rlar.training.presets import METHOD_NAMES


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model (one fold or all folds)",
        description="Train from a YAML config file or a shipped config "
        f"({', '.join(shipped_config_names())}); NAME:SIZE selects a size, e.g. ddti:cpu. Prints and saves the "
        "held-out test fold's metrics; the checkpoint is chosen on an inner validation split (docs/protocol.md).",
    )
    parser.add_argument("--config", required=True, metavar="FILE_OR_NAME", help="config file or shipped name[:size]")
    parser.add_argument("--size", default=None, help="size from the config's 'sizes' section (e.g. cpu, paper)")
    parser.add_argument("--method", choices=METHOD_NAMES, default=None,
                        help="method preset (overrides the config's 'method'; see docs/protocol.md)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set optim.lr=3e-4 (repeatable; value read as YAML)")
    parser.add_argument("--fold", default=None, help="fold index (default: data.fold) or 'all'")
    parser.add_argument("--out", default=None, help="run folder (default: the config's 'output'/<method>/fold_<k>)")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/checkpoints/last.pt")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a finished or interrupted run in --out (refused without this or --resume)")
    add_device_argument(parser, None, help="override training.device")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (e.g. for log files); one line per epoch is still printed")
    parser.set_defaults(func=run)


def resolve_config(args: argparse.Namespace) -> RlarConfig:
    path, size = find_config(args.config)
    overrides = list(args.overrides)
    if getattr(args, "method", None) is not None:
        overrides.insert(0, f"method={args.method}")
    if args.device is not None:
        overrides.append(f"training.device={args.device}")
    return load_config(path, overrides, size=args.size or size)


def fold_dir(cfg: RlarConfig, out: str | None, fold: int, all_folds: bool) -> Path:
    base = Path(out) if out is not None else Path(cfg.output) / cfg.method
    return train_fold_dir(base, fold) if (all_folds or out is None) else base


def check_data_root(cfg: RlarConfig) -> None:
    """A source that reads a dataset folder needs ``data.root``: say so in the spelling ``rlar train`` accepts
    (``--set data.root=DIR``; the data commands' ``--root`` flag does not exist here), before any work."""
    from rlar.data.sources import get_source_class

    source = get_source_class(cfg.data.source)
    if source.needs_root and (cfg.data.root is None or str(cfg.data.root) == ""):
        raise ConfigError("data.root", f"the {source.name} source reads a dataset folder: give its root with "
                                       f"--set data.root=DIR (or data.root in the config file)")


def run(args: argparse.Namespace) -> int:
    from rlar.training.run import check_run_folder, printable, run_training

    cfg = resolve_config(args)
    all_folds = args.fold == "all"
    if all_folds:
        folds = list(range(cfg.data.n_folds))
    elif args.fold is None:
        folds = [cfg.data.fold]
    else:
        try:
            folds = [int(args.fold)]
        except ValueError:
            raise ConfigError("--fold", f"expected a fold number or 'all', got '{args.fold}'") from None
    resume, overwrite = args.resume, getattr(args, "overwrite", False)
    if resume and overwrite:
        raise ConfigError("--overwrite", "cannot be combined with --resume: resume continues the run, overwrite "
                                         "replaces it; choose one")
    check_data_root(cfg)
    for fold in folds:  # every fold's folder, before the first one trains for hours
        check_run_folder(fold_dir(cfg, args.out, fold, all_folds), resume, overwrite)
    results: list[dict[str, Any]] = []
    for fold in folds:
        out_dir = fold_dir(cfg, args.out, fold, all_folds)
        metrics = run_training(cfg, out_dir, fold=fold, resume=resume, progress=not args.no_progress,
                               overwrite=overwrite, epoch_lines=True)
        if metrics:  # rank 0 only
            results.append(metrics)
            write_curves([out_dir], out_dir / CURVES_FILE)
            print(printable(f"fold {fold} test: {headline(metrics.get('test', {}))} "
                            f"({describe_run(metrics.get('run', {}))}) -> {out_dir}"))
    if all_folds and results:
        from rlar.evaluation.metrics import format_mean_std, summarise_folds

        summary = summarise_folds([r["test"] for r in results])
        base = Path(args.out) if args.out is not None else Path(cfg.output) / cfg.method
        write_summary(base / SUMMARY_FILE, {"test": summary, "folds": [r["run"]["fold"] for r in results]})
        print(f"test folds, mean ± std over {len(results)} folds (sample std):")
        for key in HEADLINE_METRICS:
            if key in summary:
                print(f"  {key:>17}: {format_mean_std(summary[key]['mean'], summary[key]['std'])}")
        print(printable(f"summary over {len(results)} folds written to {base / SUMMARY_FILE}"))
    return 0


#: Metrics printed per fold and summarised over folds (all measured on the held-out test side): each task's
#: ``TaskSpec.summary`` (rlar.tasks), so an optional task (an ACR descriptor) shows up when the run trained it.
HEADLINE_METRICS: tuple[str, ...] = summary_metrics()


def headline(metrics: dict[str, Any]) -> str:
    """``dice 0.81, macro_f1 0.40, ...`` for the metrics a run has."""
    parts = []
    for key in HEADLINE_METRICS:
        value = metrics.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            parts.append(f"{key} {value:.4f}")
    return ", ".join(parts) or "no metrics"


def describe_run(run: dict[str, Any]) -> str:
    """``checkpoint of epoch 12 chosen on 40 val images; 40 test images``."""
    chosen = "last epoch" if run.get("selection") == "last" else f"epoch {run.get('checkpoint_epoch')} chosen on val"
    return f"{run.get('n_test')} test images; {chosen} ({run.get('n_val')} images)"


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    """Write the --fold all summary; a failure names the path (exit 2) instead of a traceback."""
    from rlar.errors import DataError

    try:
        path.write_text(json.dumps(summary, indent=1, default=str))
    except OSError as exc:
        raise DataError(path, f"cannot write the summary ({exc.strerror or exc})") from None

