"""One training run, end to end: source -> split -> radiomics targets -> datasets -> model/strategy/loss -> trainer
-> evaluation of the best checkpoint on the validation fold.

Files written into ``out_dir`` (rank 0 only):

- ``config.yaml``: the resolved config (method preset expanded), reloadable with ``rlar train --config``;
- ``splits.json``: every fold of the split used (image ids), reusable as ``data.split_file``;
- ``log.csv`` and ``tensorboard/``: per-epoch (and per-step) scalars;
- ``checkpoints/last.pt`` (resume) and ``checkpoints/best.pt`` (best validation score);
- ``metrics.json``: the validation-fold metrics of the best checkpoint, plus a ``run`` section.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, DistributedSampler

from rlar.data.labels import LabelSpace, detect_scale
from rlar.data.sources import open_source
from rlar.data.sources.base import Source
from rlar.data.splits import check_splits, load_splits, make_splits, save_splits
from rlar.errors import ConfigError, DataError
from rlar.training.checkpoint import load_checkpoint
from rlar.training.config import RlarConfig, config_to_dict, dump_config, validate_config
from rlar.training.distributed import (
    DistContext,
    barrier,
    broadcast_parameters,
    cleanup_distributed,
    init_distributed,
)
from rlar.training.seeding import make_generator, seed_everything, worker_init_fn
from rlar.training.trainer import BEST, Trainer, resolve_device

CONFIG_FILE = "config.yaml"
SPLITS_FILE = "splits.json"
METRICS_FILE = "metrics.json"

# Settings that may differ between a run and its resumption without changing what is computed.
_RESUME_FREE_KEYS = {("training", "device"), ("data", "num_workers"), ("output",)}


def default_cache_dir() -> Path:
    """Radiomics target cache shared between runs: $RLAR_CACHE or ~/.cache/rlar."""
    return Path(os.environ.get("RLAR_CACHE", Path.home() / ".cache" / "rlar"))


def label_space_for(source: Source, task: str) -> LabelSpace:
    """The label space of a source: its declared scale, else detected from the labels it carries."""
    scale = source.scale or detect_scale([info.tirads for info in source.infos])
    return LabelSpace(scale=scale, task=task)


def _diff_key(old: Any, new: Any, path: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """First dotted path where two plain config dicts differ (ignoring resume-free keys), or None."""
    if path in _RESUME_FREE_KEYS:
        return None
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = _diff_key(old.get(key), new.get(key), (*path, key))
            if found is not None:
                return found
        return None
    return None if old == new else path


def prepare_splits(cfg: RlarConfig, source: Source, label_space: LabelSpace, out_dir: Path,
                   resume: bool) -> list[dict[str, list[str]]]:
    """The folds for this run: the run's own splits.json when resuming, a user split file, or new folds."""
    own = out_dir / SPLITS_FILE
    if resume and own.is_file():
        folds = load_splits(own)
    elif cfg.data.split_file is not None:
        folds = load_splits(cfg.data.split_file)
    else:
        folds = make_splits(source.infos, n_folds=cfg.data.n_folds, seed=cfg.data.seed, label_space=label_space)
    check_splits(folds, source.infos)
    if cfg.data.fold >= len(folds):
        raise ConfigError("data.fold", f"fold {cfg.data.fold} does not exist; the split has {len(folds)} folds")
    return folds


def prepare_radiomics(cfg: RlarConfig, source: Source, train_ids: list[str],
                      progress: bool) -> tuple[pd.DataFrame | None, dict[str, Any] | None]:
    """Standardised radiomics targets (fit on the training fold only) and the standardiser state, or (None, None).

    Leave-one-out ablation (``radiomics.exclude_feature``) is applied in the loss (see :func:`rad_feature_mask`):
    the targets keep all 13 columns, and the left-out ones are simply not supervised.
    """
    if not cfg.radiomics.enabled:
        return None, None
    from rlar.radiomics import RadiomicsParams, Standardiser, compute_targets

    try:
        params = RadiomicsParams(**cfg.radiomics.params)
    except Exception as exc:  # pydantic ValidationError, TypeError: report under the config key
        raise ConfigError("radiomics.params", str(exc).splitlines()[0] + f" ({exc})") from None
    rad_feature_mask(cfg)  # validate radiomics.exclude_feature before the (long) extraction
    cache_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else default_cache_dir()
    targets = compute_targets(source, cache_dir, params=params, progress=progress)
    train_rows = targets.loc[targets.index.intersection(pd.Index(train_ids))]
    if len(train_rows) == 0:
        raise DataError("radiomics", "no training image has a mask, so radiomics targets cannot be standardised")
    standardiser = Standardiser().fit(train_rows)
    return standardiser.transform(targets), standardiser.state_dict()


def rad_feature_mask(cfg: RlarConfig) -> list[bool] | None:
    """Which of the 13 radiomics features L_rad supervises, for ``radiomics.exclude_feature`` (None: all)."""
    if cfg.radiomics.exclude_feature is None:
        return None
    from rlar.radiomics import feature_mask

    try:
        return feature_mask(cfg.radiomics.exclude_feature)
    except (KeyError, ValueError) as exc:
        raise ConfigError("radiomics.exclude_feature", str(exc)) from None


def class_weights_for(cfg: RlarConfig, labels: np.ndarray, num_classes: int) -> torch.Tensor | None:
    """Cross-entropy class weights: 'none', an explicit list, or 'auto' (scikit-learn's 'balanced' weights
    from the training fold; classes absent from the fold get weight 1 since they contribute no loss anyway)."""
    spec = cfg.loss.class_weights
    if spec == "none":
        return None
    if isinstance(spec, list):
        if len(spec) != num_classes:
            raise ConfigError("loss.class_weights", f"has {len(spec)} entries but the label space has {num_classes} classes")
        return torch.tensor(spec, dtype=torch.float32)
    from sklearn.utils.class_weight import compute_class_weight

    known = labels[labels >= 0]
    weights = np.ones(num_classes, dtype=np.float64)
    if known.size:
        present = np.unique(known)
        weights[present] = compute_class_weight("balanced", classes=present, y=known)
    return torch.tensor(weights, dtype=torch.float32)


def build_components(cfg: RlarConfig, num_classes: int, class_weights: torch.Tensor | None
                     ) -> tuple[torch.nn.Module, torch.nn.Module, Any]:
    """Model, strategy and loss from the config; option errors are reported under their config keys."""
    from rlar.losses import MultitaskLoss
    from rlar.models import build_model
    from rlar.strategies import get_strategy

    try:
        model = build_model(
            arch=cfg.model.arch, backbone=cfg.model.backbone, num_classes=num_classes, in_channels=1,
            tirads_dim=cfg.model.tirads_dim, deep_dim=cfg.model.deep_dim, pretrained_path=cfg.model.pretrained_path,
            **cfg.model.options,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError("model", str(exc)) from None
    name = cfg.strategy.name
    options = {"representation": cfg.strategy.representation, **cfg.strategy.selected_options}
    try:
        strategy = get_strategy(name, tasks=cfg.strategy.tasks, **options)
    except ConfigError as err:
        # The strategy names its own option ("tau", "strategy.tau", "tasks.cls"); say where it sits in the config.
        key = err.key.removeprefix("strategy.").removeprefix("strategy")
        if key == "":
            full = "strategy.name"
        elif key.startswith("tasks") or key == "representation":
            full = f"strategy.{key}"
        else:
            full = f"strategy.options.{name}.{key}"
        raise ConfigError(full, err.reason) from None
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"strategy.options.{name}", str(exc)) from None
    weights = cfg.loss.weights
    loss_fn = MultitaskLoss(
        seg_weight=weights.seg, cls_weight=weights.cls, rad_weight=weights.rad,
        class_weights=class_weights, label_smoothing=cfg.loss.label_smoothing,
        rad_feature_mask=rad_feature_mask(cfg),
    )
    return model, strategy, loss_fn


def _evaluator(batch_size: int, device: torch.device, num_workers: int):
    """validate(model) -> (metrics, score) on a fixed dataset, for the trainer."""
    from rlar.evaluation.evaluate import evaluate, validation_score

    def make(dataset):
        def validate(model: torch.nn.Module) -> tuple[dict[str, Any], float]:
            with torch.no_grad():
                metrics = evaluate(model, dataset, batch_size=batch_size, device=device, progress=False,
                                   num_workers=num_workers)
            try:
                score = validation_score(metrics)
            except ValueError as exc:
                warnings.warn(f"validation fold gives no selection score ({exc}); keeping the latest weights",
                              stacklevel=2)
                score = math.nan
            return metrics, score

        return validate

    return make


def run_training(cfg: RlarConfig, out_dir: str | Path, fold: int | None = None, resume: bool = False,
                 progress: bool = True) -> dict[str, Any]:
    """Train one fold and evaluate its best checkpoint on the validation images; returns the metrics dict.

    Args:
        cfg: the validated config (``fold`` overrides ``cfg.data.fold``).
        out_dir: run folder (created). With ``resume``, continues from ``out_dir/checkpoints/last.pt``; the
            config must match the one saved there (except device / num_workers / output).
        progress: tqdm bars and per-epoch lines.
    Raises ConfigError / DataError for bad settings or data, TrainingDiverged when the loss becomes NaN/inf.
    Under ``torchrun`` every rank calls this; only rank 0 writes files and returns full metrics.
    """
    cfg = cfg.model_copy(deep=True)
    if fold is not None:
        raw = config_to_dict(cfg)
        raw["data"]["fold"] = fold
        cfg = validate_config(raw)  # re-runs the cross-field checks (fold < n_folds)
    out_dir = Path(out_dir)
    device = resolve_device(cfg.training.device)
    ctx: DistContext = init_distributed(device.type)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    try:
        return _run(cfg, out_dir, device, ctx, resume, progress and ctx.is_main)
    finally:
        cleanup_distributed(ctx)


def _run(cfg: RlarConfig, out_dir: Path, device: torch.device, ctx: DistContext, resume: bool,
         progress: bool) -> dict[str, Any]:
    from rlar.data.dataset import ThyroidDataset, collate

    last = out_dir / "checkpoints" / "last.pt"
    if resume:
        if not last.is_file():
            raise DataError(last, "cannot resume: no checkpoint here (run without --resume to start)")
        saved = load_checkpoint(last)["config"]
        differs = _diff_key(saved, config_to_dict(cfg))
        if differs is not None:
            key = ".".join(differs)
            raise ConfigError(key, f"differs from the run being resumed ({out_dir / CONFIG_FILE}); resume with the same config")
    seed_everything(cfg.training.seed, cfg.training.deterministic)
    if cfg.training.cpu_threads is not None:
        torch.set_num_threads(cfg.training.cpu_threads)

    source = open_source(cfg.data.source, cfg.data.root, **cfg.data.options)
    label_space = label_space_for(source, cfg.data.task)
    folds = prepare_splits(cfg, source, label_space, out_dir, resume)
    train_ids, val_ids = folds[cfg.data.fold]["train"], folds[cfg.data.fold]["val"]
    if not train_ids or not val_ids:
        raise DataError(f"fold {cfg.data.fold}", f"empty side (train {len(train_ids)}, val {len(val_ids)} images)")
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, out_dir / CONFIG_FILE)
        save_splits(out_dir / SPLITS_FILE, folds)

    radiomics, standardiser_state = prepare_radiomics(cfg, source, train_ids, progress)
    size = tuple(cfg.data.image_size)
    train_ds = ThyroidDataset(source, train_ids, image_size=size, label_space=label_space, radiomics=radiomics,
                              augment=cfg.data.augment, seed=cfg.training.seed, cache_in_memory=True)
    val_ds = ThyroidDataset(source, val_ids, image_size=size, label_space=label_space, radiomics=radiomics,
                            augment=False, cache_in_memory=True)

    generator = make_generator(cfg.training.seed)
    sampler = None
    if ctx.enabled:
        sampler = DistributedSampler(train_ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                     seed=cfg.training.seed)
    batch_size = cfg.optim.batch_size
    per_rank = math.ceil(len(train_ds) / ctx.world_size)
    # BatchNorm cannot train on a batch of one sample: drop a lonely last sample rather than crash on it.
    drop_last = per_rank > batch_size and per_rank % batch_size == 1
    train_loader = DataLoader(
        train_ds, batch_size=batch_size, shuffle=sampler is None, sampler=sampler, collate_fn=collate,
        num_workers=cfg.data.num_workers, worker_init_fn=worker_init_fn, generator=generator, drop_last=drop_last,
        pin_memory=device.type == "cuda", persistent_workers=False,
    )

    weights = class_weights_for(cfg, train_ds.labels, label_space.num_classes)
    model, strategy, loss_fn = build_components(cfg, label_space.num_classes, weights)
    model.to(device)
    strategy.to(device)
    if isinstance(loss_fn, torch.nn.Module):
        loss_fn.to(device)
    broadcast_parameters(model, ctx)
    # Different data randomness per rank (dropout), identical initial weights (broadcast above).
    if ctx.enabled:
        seed_everything(cfg.training.seed + ctx.rank, cfg.training.deterministic)

    validate = _evaluator(batch_size, device, cfg.data.num_workers)(val_ds)
    extra_state = {
        "config": config_to_dict(cfg),
        "standardiser": standardiser_state,
        "label_space": {"scale": label_space.scale, "task": label_space.task},
        "fold": cfg.data.fold,
    }
    trainer = Trainer(
        model=model, strategy=strategy, loss_fn=loss_fn, train_loader=train_loader, optim=cfg.optim,
        training=cfg.training, out_dir=out_dir, device=device, validate=validate, generator=generator,
        extra_state=extra_state, dist=ctx, progress=progress,
    )
    if resume:
        trainer.resume(last)
    state = trainer.fit()
    barrier(ctx)
    if not ctx.is_main:
        return {}

    best = out_dir / "checkpoints" / BEST
    chosen = best if best.is_file() else last
    model.load_state_dict(load_checkpoint(chosen, map_location=device)["model"])
    metrics, score = validate(model)
    result = dict(metrics)
    result["run"] = {
        "method": cfg.method,
        "fold": cfg.data.fold,
        "checkpoint": str(chosen),
        "best_epoch": state.best_epoch,
        "validation_score": score,
        "epochs_run": state.epoch,
        "stopped_early": state.stopped_early,
        "n_train": len(train_ds),
        "n_val": len(val_ds),
        "world_size": ctx.world_size,
    }
    (out_dir / METRICS_FILE).write_text(json.dumps(to_jsonable(result), indent=1))
    return result


def to_jsonable(value: Any) -> Any:
    """Metrics as strict JSON (NaN -> null, numpy -> python)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
