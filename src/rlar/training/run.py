"""One training run under the nested held-out protocol (docs/protocol.md), end to end:
source -> content groups -> train/val/test split -> radiomics targets -> datasets -> model/strategy/loss -> trainer
(checkpoint selection on the inner ``val`` only) -> one evaluation of the chosen checkpoint on the outer ``test``.

Files written into ``out_dir`` (rank 0 only; the run-folder layout of docs/interfaces.md):

- ``config.yaml``: the resolved config (method preset expanded), reloadable with ``rlar train --config``;
- ``splits.json``: every fold's ``train``/``val``/``test`` image ids, reusable (and editable) as ``data.split_file``;
- ``log.csv`` and ``tensorboard/``: per-epoch (and per-step) scalars, incl. the strategy's cosine and extras;
- ``checkpoints/last.pt`` (resume) and ``checkpoints/best.pt`` (best inner-validation score);
- ``metrics.json``: ``{"test": {...}, "val": {...}, "run": {...}}`` of the chosen checkpoint, written last and
  atomically (a temporary file in the folder, then ``os.replace``): a run folder with a readable ``metrics.json`` is
  finished (:func:`rlar.runs.is_finished`), and an interrupted write never leaves an empty or torn one;
- ``predictions_test.csv``: one row per test image (scores, label, prediction, class probabilities).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from rlar.data.labels import LabelSpace, detect_scale
from rlar.data.sources import open_source
from rlar.data.sources.base import Source
from rlar.data.splits import SIDES, Fold, check_splits, load_splits, make_splits, save_splits
from rlar.environment import check_writable, resolve_device, set_cpu_threads
from rlar.errors import ConfigError, DataError, RlarError
from rlar.prediction import PredictionOptions
from rlar.runs import (
    BEST,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    LAST,
    METRICS_FILE,
    PREDICTIONS_FILE,
    SPLITS_FILE,
    checkpoint_file,
    is_finished,
)
from rlar.training.builders import build_components, rad_feature_mask
from rlar.training.checkpoint import load_checkpoint
from rlar.training.config import RlarConfig, config_to_dict, dump_config, validate_config
from rlar.training.config_diff import RESUME_FREE_KEYS, config_difference
from rlar.training.distributed import (
    DistContext,
    barrier,
    broadcast_parameters,
    cleanup_distributed,
    init_distributed,
)
from rlar.training.environment import run_environment
from rlar.training.seeding import make_generator, seed_everything, worker_init_fn
from rlar.training.trainer import Trainer, TrainState

__all__ = ["RESUME_FREE_KEYS", "build_components", "check_run_folder", "config_difference", "label_space_for", "prepare_splits",
           "printable", "rad_feature_mask", "run_training", "to_jsonable", "write_text"]


def default_cache_dir() -> Path:
    """Radiomics target cache shared between runs: $RLAR_CACHE or ~/.cache/rlar."""
    return Path(os.environ.get("RLAR_CACHE", Path.home() / ".cache" / "rlar"))


def label_space_for(source: Source, task: str) -> LabelSpace:
    """The label space of a source: its declared scale, else detected from the labels it carries."""
    scale = source.scale or detect_scale([info.tirads for info in source.infos])
    return LabelSpace(scale=scale, task=task)


def _check_run_folder_writable(folder: Path) -> None:
    """Create the run folder and prove a file can be written there, before any long work (issue 11).

    A folder whose name is not UTF-8 is refused first: TensorBoard's event writer encodes its path as UTF-8 and
    would fail with a traceback (issue 23), although the write probe itself succeeds."""
    try:
        str(folder).encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(printable(str(folder)), "the run folder's name is not valid UTF-8 (TensorBoard cannot write "
                                                "there); choose another --out") from None
    check_writable(folder, "the run folder", remedy="choose another --out")


def check_run_folder(out_dir: str | Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run over an existing one (issue 23): a finished run (readable ``metrics.json``) or an
    interrupted one (``checkpoints/last.pt``) in ``out_dir`` is kept unless the caller resumes it or asks to
    overwrite it. ConfigError naming ``--out`` and the two flags that say what to do otherwise."""
    out_dir = Path(out_dir)
    if resume or overwrite:
        return
    last = checkpoint_file(out_dir, LAST)
    if is_finished(out_dir):
        raise ConfigError("--out", f"{printable(str(out_dir))} holds a finished run ({METRICS_FILE}); it is kept. "
                                   "Use another --out, --resume to continue it (same config), or --overwrite to "
                                   "replace it")
    if last.is_file():
        raise ConfigError("--out", f"{printable(str(out_dir))} holds an unfinished run ({CHECKPOINT_DIR}/{LAST}); it is kept. "
                                   "Use --resume to continue it, --overwrite to start again, or another --out")


def _clear_previous_run(out_dir: Path) -> None:
    """Before overwriting: remove the old run's finished marker and checkpoints, so that an interrupted new run is
    not taken for the old finished one and the new run cannot report the old run's ``best.pt``. Other files
    (log.csv, splits.json, config.yaml, predictions_test.csv) are rewritten by the new run."""
    for path in (out_dir / METRICS_FILE, checkpoint_file(out_dir, BEST), checkpoint_file(out_dir, LAST)):
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise DataError(path, f"cannot remove the previous run's file before overwriting it "
                                  f"({exc.strerror or exc})") from None


def printable(text: str) -> str:
    """``text`` safe to print or write as UTF-8: a file name that is not UTF-8 (held by Python as lone surrogates)
    gets its undecodable bytes as ``\\xNN`` instead of raising UnicodeEncodeError after the work."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no file-name decoding produced: show its code point
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _normalised(saved: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's config passed through today's schema, so a key added since (with its default) is no
    difference; the raw dict when it no longer validates (the comparison then names the key)."""
    try:
        return config_to_dict(validate_config(saved))
    except RlarError:
        return saved


def prepare_splits(cfg: RlarConfig, source: Source, label_space: LabelSpace, out_dir: Path, resume: bool,
                   progress: bool = False, notes: bool = False) -> list[Fold]:
    """The folds of this run (the run's own splits.json when resuming, a user split file, or new nested folds),
    checked against the content groups: no patient and no content group on two sides of any fold.

    Images that cannot be decoded are dropped from ``source.infos`` (recorded in ``source.skips``) and, with
    ``notes``, listed on stdout, the way ``rlar data summary`` does.
    """
    from rlar.data.grouping import drop_unreadable, group_source

    grouping = group_source(source, by_content=cfg.data.group_by_content,
                            near_threshold=cfg.data.near_duplicate_bits, progress=progress)
    drop_unreadable(source, grouping.unreadable)
    if grouping.unreadable and notes:
        tqdm.write(f"skipped {len(grouping.unreadable)} unreadable image(s):")
        for skip in grouping.unreadable:
            tqdm.write(printable(f"  {skip.item}: {skip.reason}"))
    if grouping.merged and notes:
        tqdm.write(printable(f"{len(grouping.merged)} split group(s) join several patients because their images are "
                             f"identical or near-identical: " + ", ".join(g.group for g in grouping.merged[:10])))
    own = out_dir / SPLITS_FILE
    if resume and own.is_file():
        folds, where = load_splits(own), str(own)
    elif cfg.data.split_file is not None:
        folds, where = load_splits(cfg.data.split_file), str(cfg.data.split_file)
    else:
        folds, where = make_splits(source.infos, n_folds=cfg.data.n_folds, seed=cfg.data.seed,
                                   label_space=label_space, val_fraction=cfg.data.val_fraction,
                                   groups=grouping.group_of), "split"
    unreadable = {skip.item for skip in grouping.unreadable}
    if unreadable:  # a given split may name images that turned out unreadable: leave them out, as listed above
        folds = [{side: [i for i in fold[side] if i not in unreadable] for side in SIDES} for fold in folds]
    check_splits(folds, source.infos, groups=grouping.group_of, where=where)
    if cfg.data.fold >= len(folds):
        raise ConfigError("data.fold", f"fold {cfg.data.fold} does not exist; the split has {len(folds)} folds")
    return folds


def prepare_radiomics(cfg: RlarConfig, source: Source, train_ids: list[str], progress: bool
                      ) -> tuple[pd.DataFrame | None, dict[str, Any] | None, dict[str, Any] | None]:
    """Standardised radiomics targets (fit on the training side only), the standardiser state and the training
    reference distribution (:func:`radiomics_reference`), or (None, None, None) without guidance.

    Leave-one-out ablation (``radiomics.exclude_feature``) is applied in the loss (see :func:`rad_feature_mask`):
    the targets keep all 13 columns, and the left-out ones are simply not supervised.
    """
    if not cfg.radiomics.enabled:
        return None, None, None
    from rlar.radiomics import RadiomicsParams, Standardiser, compute_targets

    params = RadiomicsParams(**cfg.radiomics.params)  # validated when the config loaded
    rad_feature_mask(cfg)  # validate radiomics.exclude_feature before the (long) extraction
    cache_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else default_cache_dir()
    targets = compute_targets(source, cache_dir, params=params, progress=progress)
    train_rows = targets.loc[targets.index.intersection(pd.Index(train_ids))]
    if len(train_rows) == 0:
        raise DataError("radiomics", "no training image has a mask, so radiomics targets cannot be standardised")
    standardiser = Standardiser().fit(train_rows)
    return standardiser.transform(targets), standardiser.state_dict(), radiomics_reference(train_rows)


def radiomics_reference(train_rows: pd.DataFrame) -> dict[str, Any]:
    """The checkpoint's ``radiomics_reference``: the raw (unstandardised) 13 features of every training-side image
    with a mask, so that ``rlar predict`` can place a new nodule's value as a percentile of the training nodules."""
    from rlar.radiomics.spec import FEATURE_NAMES

    values = train_rows.loc[:, list(FEATURE_NAMES)].to_numpy(dtype=np.float64)
    return {"columns": list(FEATURE_NAMES), "values": values.tolist()}


def class_weights_for(cfg: RlarConfig, labels: np.ndarray, num_classes: int) -> torch.Tensor | None:
    """Cross-entropy class weights: 'none', an explicit list, or 'auto' (scikit-learn's 'balanced' weights
    from the training side; classes absent from it get weight 1 since they contribute no loss anyway)."""
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


def _evaluator(batch_size: int, device: torch.device, num_workers: int, options: PredictionOptions
               ) -> Callable[[Any], Callable[[torch.nn.Module], tuple[dict[str, Any], float]]]:
    """validate(model) -> (metrics, score) on a fixed dataset, for the trainer."""
    from rlar.evaluation.evaluate import evaluate, validation_score

    def make(dataset: Any) -> Callable[[torch.nn.Module], tuple[dict[str, Any], float]]:
        def validate(model: torch.nn.Module) -> tuple[dict[str, Any], float]:
            with torch.no_grad():
                metrics = evaluate(model, dataset, batch_size=batch_size, device=device, progress=False,
                                   num_workers=num_workers, options=options)
            try:
                score = validation_score(metrics)
            except ValueError as exc:
                warnings.warn(f"validation split gives no selection score ({exc}); keeping the latest weights",
                              stacklevel=2)
                score = math.nan
            return metrics, score

        return validate

    return make


def run_training(cfg: RlarConfig, out_dir: str | Path, fold: int | None = None, resume: bool = False,
                 progress: bool = True, overwrite: bool = True, epoch_lines: bool | None = None) -> dict[str, Any]:
    """Train one fold, select the checkpoint on its inner ``val`` split, and score it once on its ``test`` side.

    Args:
        cfg: the validated config (``fold`` overrides ``cfg.data.fold``).
        out_dir: run folder (created; checked writable first). With ``resume``, continues from
            ``out_dir/checkpoints/last.pt``; the config must match the one saved there (except device /
            num_workers / output).
        progress: tqdm bars (and, unless ``epoch_lines`` says otherwise, the per-epoch lines).
        overwrite: False refuses a folder that holds a finished or interrupted run unless ``resume``
            (:func:`check_run_folder`; ``rlar train`` passes False unless ``--overwrite``); True (the library default,
            for callers such as the demo that own their folder) replaces it, removing its ``metrics.json`` and
            checkpoints first.
        epoch_lines: print one line per epoch (losses, validation score, seconds); None follows ``progress``.
            ``rlar train`` prints them even with ``--no-progress``; the experiment runner's workers do not, so
            parallel runs do not interleave their lines.
    Returns ``{"test": flat metrics, "val": flat metrics, "run": {...}}`` (also written to ``metrics.json``).
    Raises ConfigError / DataError for bad settings or data, TrainingDiverged when the loss becomes non-finite or
    blows up. Under ``torchrun`` every rank calls this; only rank 0 writes files and returns the metrics.
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
        return _run(cfg, out_dir, device, ctx, resume, progress and ctx.is_main, overwrite,
                    (progress if epoch_lines is None else epoch_lines) and ctx.is_main)
    finally:
        cleanup_distributed(ctx)


def _datasets(cfg: RlarConfig, source: Source, fold: Fold, label_space: LabelSpace,
              radiomics: pd.DataFrame | None, standardiser_state: dict[str, Any] | None, notes: bool
              ) -> dict[str, Any]:
    """One ThyroidDataset per side; images that cannot be decoded are dropped (and listed) instead of crashing.

    The training side's radiomics targets follow its augmentation (``rlar.radiomics.augmented``)."""
    from rlar.data.dataset import ThyroidDataset
    from rlar.radiomics import AugmentedTargets, RadiomicsParams

    size = (int(cfg.data.image_size[0]), int(cfg.data.image_size[1]))
    retarget = None
    if standardiser_state is not None:
        retarget = AugmentedTargets(standardiser_state, RadiomicsParams(**cfg.radiomics.params))
    datasets = {}
    for side in SIDES:
        train = side == "train"
        datasets[side] = ThyroidDataset(source, fold[side], image_size=size, label_space=label_space,
                                        radiomics=radiomics, augment=cfg.data.augment and train,
                                        seed=cfg.training.seed, cache_in_memory=True,
                                        augmentation=cfg.data.augmentation, retarget=retarget if train else None)
        skipped = getattr(datasets[side], "skipped", [])
        if skipped and notes:
            tqdm.write(f"{side}: skipped {len(skipped)} unreadable image(s):")
            for skip in skipped:
                tqdm.write(printable(f"  {skip.item}: {skip.reason}"))
    return datasets


def _competition_probe(cfg: RlarConfig, datasets: Mapping[str, Any], loss_fn: Any, out_dir: Path,
                       device: torch.device) -> Any:
    """The per-layer task-competition probe of a two-task model (None when off or single-task)."""
    from rlar.training.competition import CompetitionProbe, probe_batch
    from rlar.training.trainer import move_batch

    if cfg.training.competition_probe == 0 or cfg.model.arch != "multitask":
        return None
    train = datasets["train"]
    batch = probe_batch((train[i] for i in range(len(train))), cfg.training.competition_probe)
    return None if batch is None else CompetitionProbe(move_batch(batch, device), loss_fn, out_dir)


def _prepare_run_folder(cfg: RlarConfig, out_dir: Path, ctx: DistContext, resume: bool, overwrite: bool,
                        last: Path) -> None:
    """Check the run folder before any work: refuse a finished/interrupted run unless allowed, check that a
    resumed run has a checkpoint and the same config, and (rank 0) check it is writable and clear an old run."""
    check_run_folder(out_dir, resume, overwrite)
    if resume:
        if not last.is_file():
            raise DataError(last, "cannot resume: no checkpoint here (run without --resume to start)")
        saved = _normalised(load_checkpoint(last)["config"])
        differs = config_difference(saved, config_to_dict(cfg))
        if differs is not None:
            key = ".".join(differs)
            raise ConfigError(key, f"differs from the run being resumed ({out_dir / CONFIG_FILE}); resume with the same config")
    if ctx.is_main:
        _check_run_folder_writable(out_dir)
        if not resume:
            _clear_previous_run(out_dir)


def _train_loader(cfg: RlarConfig, train_ds: Any, ctx: DistContext, device: torch.device,
                  generator: torch.Generator) -> DataLoader[Any]:
    """The shuffled training loader (a DistributedSampler under torchrun), dropping a lonely last sample."""
    sampler: DistributedSampler[Any] | None = None
    if ctx.enabled:
        sampler = DistributedSampler(train_ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                     seed=cfg.training.seed)
    batch_size = cfg.optim.batch_size
    per_rank = math.ceil(len(train_ds) / ctx.world_size)
    # BatchNorm cannot train on a batch of one sample: drop a lonely last sample rather than crash on it.
    drop_last = per_rank > batch_size and per_rank % batch_size == 1
    return DataLoader(
        train_ds, batch_size=batch_size, shuffle=sampler is None, sampler=sampler,
        collate_fn=train_ds.collate_fn,
        num_workers=cfg.data.num_workers, worker_init_fn=worker_init_fn, generator=generator, drop_last=drop_last,
        pin_memory=device.type == "cuda", persistent_workers=False,
    )


def _components_on_device(cfg: RlarConfig, label_space: LabelSpace, train_ds: Any, device: torch.device,
                          ctx: DistContext) -> tuple[torch.nn.Module, Any, Any]:
    """Build model, strategy and loss (class weights from the training labels) on ``device``, with the same
    initial weights on every rank and, under torchrun, different data randomness (dropout) per rank."""
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
    return model, strategy, loss_fn


def _checkpoint_state(cfg: RlarConfig, standardiser_state: dict[str, Any] | None, reference: dict[str, Any] | None,
                      label_space: LabelSpace) -> dict[str, Any]:
    """What every checkpoint carries besides the weights, so inference can rebuild the model and its inputs."""
    return {
        "config": config_to_dict(cfg),
        "standardiser": standardiser_state,
        "radiomics_reference": reference,
        "label_space": {"scale": label_space.scale, "task": label_space.task},
        "fold": cfg.data.fold,
    }


def _run_record(cfg: RlarConfig, chosen: Path, chosen_state: Mapping[str, Any], state: TrainState, score: float,
                source: Source, datasets: Mapping[str, Any], started: float, ctx: DistContext,
                device: torch.device) -> dict[str, Any]:
    """The ``run`` part of ``metrics.json``: what was trained, which checkpoint was chosen, sizes, skips, time."""
    return {
        "method": cfg.method,
        "fold": cfg.data.fold,
        "seed": cfg.training.seed,
        "selection": cfg.training.selection,
        "checkpoint": str(chosen),
        "best_epoch": state.best_epoch,
        "checkpoint_epoch": int(chosen_state["epoch"]),
        "validation_score": score,
        "epochs_run": state.epoch,
        "stopped_early": state.stopped_early,
        "n_train": len(datasets["train"]),
        "n_val": len(datasets["val"]),
        "n_test": len(datasets["test"]),
        "skipped": [f"{s.item}: {s.reason}" for s in source.skips]
        + [f"{s.item}: {s.reason}" for side in SIDES for s in getattr(datasets[side], "skipped", [])],
        "wall_time_s": time.perf_counter() - started,
        "world_size": ctx.world_size,
        "environment": run_environment(device),
    }


def _run(cfg: RlarConfig, out_dir: Path, device: torch.device, ctx: DistContext, resume: bool,
         progress: bool, overwrite: bool = True, epoch_lines: bool = False) -> dict[str, Any]:
    """The body of :func:`run_training` on one rank: prepare, train, then (rank 0) select and score once."""
    started = time.perf_counter()
    last = checkpoint_file(out_dir, LAST)
    _prepare_run_folder(cfg, out_dir, ctx, resume, overwrite, last)
    seed_everything(cfg.training.seed, cfg.training.deterministic)
    set_cpu_threads(cfg.training.cpu_threads)

    # Data: source, splits (saved with the resolved config), radiomics targets, one dataset per side.
    source = open_source(cfg.data.source, cfg.data.root, **cfg.data.options)
    label_space = label_space_for(source, cfg.data.task)
    folds = prepare_splits(cfg, source, label_space, out_dir, resume, progress, notes=ctx.is_main)
    fold = folds[cfg.data.fold]
    if ctx.is_main:
        dump_config(cfg, out_dir / CONFIG_FILE)
        save_splits(out_dir / SPLITS_FILE, folds)
    radiomics, standardiser_state, reference = prepare_radiomics(cfg, source, fold["train"], progress)
    datasets = _datasets(cfg, source, fold, label_space, radiomics, standardiser_state, notes=ctx.is_main)

    # Training, with checkpoint selection on the inner validation side.
    generator = make_generator(cfg.training.seed)
    train_loader = _train_loader(cfg, datasets["train"], ctx, device, generator)
    model, strategy, loss_fn = _components_on_device(cfg, label_space, datasets["train"], device, ctx)
    batch_size = cfg.optim.batch_size
    validate = _evaluator(batch_size, device, cfg.data.num_workers, cfg.prediction)(datasets["val"])
    trainer = Trainer(
        model=model, strategy=strategy, loss_fn=loss_fn, train_loader=train_loader, optim=cfg.optim,
        training=cfg.training, out_dir=out_dir, device=device, validate=validate, generator=generator,
        extra_state=_checkpoint_state(cfg, standardiser_state, reference, label_space), dist=ctx,
        progress=progress, epoch_lines=epoch_lines, probe=_competition_probe(cfg, datasets, loss_fn, out_dir, device),
    )
    if resume:
        trainer.resume(last)
    state = trainer.fit()
    barrier(ctx)
    if not ctx.is_main:
        return {}

    # The chosen checkpoint, scored once on the outer test side.
    best = checkpoint_file(out_dir, BEST)
    chosen = best if (cfg.training.selection == "best_val" and best.is_file()) else last
    chosen_state = load_checkpoint(chosen, map_location=device)
    model.load_state_dict(chosen_state["model"])
    val_metrics, score = validate(model)
    test_metrics = score_test(model, datasets["test"], batch_size, device, cfg.data.num_workers,
                              out_dir / PREDICTIONS_FILE, progress, cfg.prediction)
    result: dict[str, Any] = {
        "test": test_metrics,
        "val": val_metrics,
        "run": _run_record(cfg, chosen, chosen_state, state, score, source, datasets, started, ctx, device),
    }
    write_text(out_dir / METRICS_FILE, json.dumps(to_jsonable(result), indent=1))
    return result


def score_test(model: torch.nn.Module, dataset: Any, batch_size: int, device: torch.device, num_workers: int,
               predictions_path: Path, progress: bool, options: PredictionOptions | None = None) -> dict[str, Any]:
    """The one look at the test side: per-image predictions to ``predictions_test.csv`` and the flat metrics."""
    from rlar.evaluation.evaluate import class_names_of, metrics_from_predictions, predict, predictions_table

    with torch.no_grad():
        frame = predict(model, dataset, batch_size=batch_size, device=device, progress=progress,
                        keep_masks=False, num_workers=num_workers, options=options)
    class_names = None
    if "pred_class" in frame.columns:
        class_names = class_names_of(dataset, sum(c.startswith("prob_") for c in frame.columns))
    table = predictions_table(frame, class_names)
    # Ids of files whose names are not UTF-8 are written with their odd bytes as \\xNN (valid UTF-8 for every
    # reader of the table) rather than failing after the work.
    for column in table.columns:
        if pd.api.types.is_object_dtype(table[column]) or pd.api.types.is_string_dtype(table[column]):
            table[column] = table[column].map(lambda v: printable(v) if isinstance(v, str) else v)
    try:
        table.to_csv(predictions_path, index=False)
    except OSError as exc:
        raise DataError(predictions_path, f"cannot write the test predictions ({exc.strerror or exc})") from None
    return metrics_from_predictions(frame, class_names)


def write_text(path: Path, text: str) -> None:
    """Write a small result file atomically: a temporary file in the same folder, flushed, then ``os.replace``,
    so a crash or a full disk never leaves an empty or torn file where readers (the experiment runner's "finished"
    test) expect a whole one. A failure is a DataError naming the path, not a traceback; the old file stays."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise DataError(path, f"cannot write ({exc.strerror or exc})") from None


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
