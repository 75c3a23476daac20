"""The training loop: AdamW, warm-up + cosine schedule, clipping, bf16 autocast on CUDA, validation-based best
checkpoint, early stopping, exact resume, divergence guard, multi-process gradient averaging.

The loop is method-agnostic: a strategy (``rlar.strategies``) fills ``.grad`` for one batch and reports losses
and the cosine between the task directions at z; the trainer owns everything around it.
"""

from __future__ import annotations

import math
import sys
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from rlar.environment import cpu_autocast_bf16
from rlar.errors import RlarError
from rlar.runs import BEST, CHECKPOINT_DIR, LAST
from rlar.strategies.base import StepReport
from rlar.training.checkpoint import load_checkpoint, save_checkpoint
from rlar.training.competition import CompetitionProbe
from rlar.training.config import OptimConfig, TrainingConfig
from rlar.training.distributed import (
    DistContext,
    all_reduce_gradients,
    broadcast_object,
    reduce_mean,
    sync_buffers,
)
from rlar.training.logging import RunLogger, flatten_scalars
from rlar.training.seeding import get_rng_state, set_rng_state

# validate(model) -> (metrics dict, scalar score where higher is better)
ValidateFn = Callable[[nn.Module], tuple[dict[str, Any], float]]


class TrainingDiverged(RlarError):
    """A loss, gradient or weight became NaN/inf, or the loss blew up; the run stops, the last good checkpoint stays."""


class DivergenceGuard:
    """Watches the loss trend (issues 11 and 23): a finite loss growing from 7e4 to 9e15 is as broken as a NaN.

    Rules, any of which stops the run (:meth:`update` returns the reason, else None):

    1. **trend**: the mean total loss of the last ``window`` steps exceeds ``factor`` x the lowest such mean so far
       (and ``min_loss``);
    2. **first steps' scale**: *every* one of the last ``window`` step losses exceeds ``factor`` x the scale of the
       run's first ``window`` steps (the lowest loss among them, at least ``min_loss``, so that a near-zero or a
       negative start, as uncertainty weighting gives, cannot make ordinary losses look like a blow-up). Rule 1
       compares windows with each other, so a blow-up inside the first window (whose mean then *is* the lowest)
       escaped it: an epoch-1 loss of 1.2e17 ended with exit 0 and a metrics.json. "Every" rather than one step
       because single batches can legitimately be far above the others (a tiny training fold whose radiomics
       feature is nearly constant gives one batch an L_rad of 4.5e6 next to 189), while a divergence stays up;
    3. **absurd magnitude** (``max_loss``, off by default for that same reason): one step's loss beyond it.

    A run whose very first steps are already blown up is caught only by rule 3 (or by a non-finite value).
    """

    def __init__(self, factor: float, window: int, min_loss: float, enabled: bool = True,
                 max_loss: float | None = None) -> None:
        self.factor, self.window, self.min_loss, self.enabled = factor, window, min_loss, enabled
        self.max_loss = max_loss
        self._recent: deque[float] = deque(maxlen=window)
        self._first: list[float] = []
        self.lowest = math.inf

    @property
    def first_scale(self) -> float:
        """The first steps' scale of rule 2 (``min_loss`` before any step)."""
        return max(min(self._first, default=self.min_loss), self.min_loss)

    def update(self, loss: float) -> str | None:
        if not self.enabled:
            return None
        if self.max_loss is not None and abs(loss) > self.max_loss:
            return (f"the loss diverged: this step's total loss is {loss:.4g}, beyond "
                    f"training.divergence.max_loss={self.max_loss:g}")
        if len(self._first) < self.window:
            self._first.append(loss)
        self._recent.append(loss)
        if len(self._recent) < self.window:
            return None
        floor, scale = min(self._recent), self.first_scale
        if floor > self.factor * scale:
            return (f"the loss diverged: each of the last {self.window} steps' total loss is at least {floor:.4g}, "
                    f"{floor / scale:.3g}x the scale of the first {len(self._first)} steps ({scale:.4g}; "
                    f"training.divergence.factor={self.factor:g})")
        mean = sum(self._recent) / len(self._recent)
        self.lowest = min(self.lowest, mean)
        if mean > self.min_loss and mean > self.factor * self.lowest:
            return (f"the loss diverged: mean total loss of the last {self.window} steps is {mean:.4g}, "
                    f"{mean / self.lowest:.3g}x its lowest value {self.lowest:.4g} (training.divergence.factor="
                    f"{self.factor:g})")
        return None


def build_optimizer(model: nn.Module, strategy: nn.Module, optim: OptimConfig) -> torch.optim.AdamW:
    """AdamW. No weight decay on biases and normalisation weights (1-D tensors) nor on strategy parameters
    (e.g. uncertainty log-variances): decaying those only biases them towards zero without regularising."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim > 1 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": optim.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    strategy_params = [p for p in strategy.parameters() if p.requires_grad]
    if strategy_params:
        groups.append({"params": strategy_params, "weight_decay": 0.0})
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=optim.lr)


#: Share of the run that the warm-up is clamped to when ``optim.warmup_epochs >= optim.epochs`` (issue 21): a
#: warm-up as long as the run would end it at the peak learning rate with no decay at all. A tenth is about what the
#: shipped CPU recipes use (1 of 20 epochs on the phantom, 2 of 25 on DDTI).
WARMUP_CLAMP_SHARE = 0.1


def effective_warmup_epochs(optim: OptimConfig) -> tuple[float, str | None]:
    """The warm-up the scheduler uses, and a one-line note when it differs from ``optim.warmup_epochs``: a warm-up
    of at least the whole run (e.g. a 2-epoch smoke run of a recipe with 5 warm-up epochs) is clamped to
    :data:`WARMUP_CLAMP_SHARE` of the run."""
    if optim.warmup_epochs < optim.epochs:
        return float(optim.warmup_epochs), None
    clamped = WARMUP_CLAMP_SHARE * optim.epochs
    return clamped, (f"note: optim.warmup_epochs={optim.warmup_epochs:g} is not shorter than optim.epochs="
                     f"{optim.epochs}; the warm-up is clamped to {clamped:g} epoch(s) ({WARMUP_CLAMP_SHARE:.0%} of the "
                     f"run) so the learning rate still decays")


def build_scheduler(optimizer: torch.optim.Optimizer, optim: OptimConfig, steps_per_epoch: int) -> LambdaLR:
    """Linear warm-up over ``warmup_epochs`` (clamped by :func:`effective_warmup_epochs`) then cosine decay to zero
    at the last step (stepped per batch)."""
    total = max(1, optim.epochs * steps_per_epoch)
    warmup = min(total - 1, round(effective_warmup_epochs(optim)[0] * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def move_batch(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors to ``device``; lists (image ids) stay as they are."""
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v for k, v in batch.items()}


@dataclass
class TrainState:
    epoch: int = 0  # completed epochs
    global_step: int = 0
    best_score: float = -math.inf
    best_epoch: int = -1
    bad_validations: int = 0
    stopped_early: bool = False


class Trainer:
    """Runs epochs of ``strategy.step`` + optimiser step, validates, checkpoints.

    Args:
        model, strategy, loss_fn: as in docs/interfaces.md (the strategy fills ``.grad``).
        train_loader: yields collated batch dicts; its sampler may be a DistributedSampler.
        optim, training: the config sections.
        out_dir: where ``log.csv``, ``tensorboard/`` and ``checkpoints/`` go (rank 0 only writes).
        device: where model and batches live.
        validate: callback giving (metrics, score) on the validation fold; None disables validation
            (then the last epoch's weights are also the "best").
        generator: the train loader's generator (its state is checkpointed so data order resumes exactly).
        extra_state: plain values stored in every checkpoint (config dict, standardiser, label space).
        dist: the process group context.
        probe: measures where the tasks compete (:mod:`rlar.training.competition`) before training and on every
            validation epoch; None: not measured.
        epoch_lines: print one line per epoch (losses, validation score, seconds) on stdout, flushed, with or
            without progress bars; None follows ``progress``. The caller decides (``rlar train`` always; the
            experiment runner's parallel workers never, so their lines do not interleave).
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        strategy: nn.Module,
        loss_fn: Callable[..., dict[str, torch.Tensor]],
        train_loader: DataLoader,
        optim: OptimConfig,
        training: TrainingConfig,
        out_dir: str | Path,
        device: torch.device,
        validate: ValidateFn | None = None,
        generator: torch.Generator | None = None,
        extra_state: dict[str, Any] | None = None,
        dist: DistContext | None = None,
        progress: bool = True,
        probe: CompetitionProbe | None = None,
        epoch_lines: bool | None = None,
    ) -> None:
        self.model = model
        self.strategy = strategy
        self.loss_fn = loss_fn
        self.train_loader = train_loader
        self.optim_cfg = optim
        self.training_cfg = training
        self.out_dir = Path(out_dir)
        self.device = device
        self.validate = validate
        self.generator = generator
        self.extra_state = dict(extra_state or {})
        self.dist = dist or DistContext()
        self.progress = progress and self.dist.is_main
        self.epoch_lines = (progress if epoch_lines is None else epoch_lines) and self.dist.is_main
        self.probe = probe if self.dist.is_main else None
        self.steps_per_epoch = max(1, len(train_loader))
        self.optimizer = build_optimizer(model, strategy, optim)
        self.scheduler = build_scheduler(self.optimizer, optim, self.steps_per_epoch)
        note = effective_warmup_epochs(optim)[1]
        if note is not None and (self.progress or self.epoch_lines):
            self._say(note)
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.state = TrainState()
        self.amp = (optim.amp and device.type == "cuda") or (optim.cpu_amp and device.type == "cpu" and cpu_autocast_bf16())
        div = training.divergence
        self.guard = DivergenceGuard(div.factor, div.window, div.min_loss, enabled=div.enabled, max_loss=div.max_loss)
        self._history: list[dict[str, Any]] = []
        self.logger: RunLogger | None = None

    # -- paths -------------------------------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / CHECKPOINT_DIR

    @property
    def last_path(self) -> Path:
        return self.checkpoint_dir / LAST

    @property
    def best_path(self) -> Path:
        return self.checkpoint_dir / BEST

    # -- checkpointing -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "strategy": self.strategy.state_dict(),
            "rng": get_rng_state(self.generator),
            "epoch": self.state.epoch,
            "global_step": self.state.global_step,
            "best_score": self.state.best_score,
            "best_epoch": self.state.best_epoch,
            "bad_validations": self.state.bad_validations,
            "history": self.logger.history if self.logger is not None else self._history,
            **self.extra_state,
        }

    def save(self, path: Path) -> None:
        if self.dist.is_main:
            self._check_weights_finite()
            save_checkpoint(path, self.state_dict())

    def resume(self, path: str | Path) -> None:
        """Restore everything :meth:`state_dict` saved; training continues with the next epoch."""
        ckpt = load_checkpoint(path, map_location=self.device)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.strategy.load_state_dict(ckpt["strategy"])
        set_rng_state(ckpt["rng"], self.generator)
        self.state = TrainState(
            epoch=int(ckpt["epoch"]),
            global_step=int(ckpt["global_step"]),
            best_score=float(ckpt["best_score"]),
            best_epoch=int(ckpt["best_epoch"]),
            bad_validations=int(ckpt["bad_validations"]),
        )
        self._history = list(ckpt.get("history", []))

    # -- guards ------------------------------------------------------------------------------------------------
    def _check_weights_finite(self) -> None:
        for name, tensor in list(self.model.state_dict().items()):
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise TrainingDiverged(
                    f"epoch {self.state.epoch}: weight '{name}' is not finite; not saved, the last good "
                    f"checkpoint is kept at {self.last_path}"
                )

    def _diverged(self, epoch: int, batch_index: int, what: str, losses: Mapping[str, float]) -> TrainingDiverged:
        values = ", ".join(f"{k}={v:.6g}" for k, v in losses.items())
        kept = f"the last good checkpoint is kept at {self.last_path}" if self.last_path.exists() else "no checkpoint yet"
        return TrainingDiverged(
            f"epoch {epoch + 1}, step {batch_index + 1} (global step {self.state.global_step}): {what} ({values}); "
            f"run stopped, {kept}. Lower optim.lr or set optim.grad_clip."
        )

    def _check_trend(self, epoch: int, batch_index: int, losses: Mapping[str, float]) -> None:
        reason = self.guard.update(losses["total"])
        if self._any_rank(reason is not None):
            raise self._diverged(epoch, batch_index, reason or "the loss diverged on another rank", losses)

    def _any_rank(self, flag: bool) -> bool:
        """True if ``flag`` is true on any rank (so every rank stops together instead of hanging)."""
        if not self.dist.enabled:
            return flag
        tensor = torch.tensor([float(flag)], device=self.device)
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
        return bool(tensor.item() > 0)

    # -- training ----------------------------------------------------------------------------------------------
    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        self.strategy.train()
        sampler: Any = getattr(self.train_loader, "sampler", None)
        if sampler is not None and hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)  # DistributedSampler: a new shuffle each epoch, same on every rank
        dataset: Any = getattr(self.train_loader, "dataset", None)
        if dataset is not None and hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)  # ThyroidDataset: augmentation randomness is a function of the epoch
        sums: dict[str, float] = defaultdict(float)
        extra_sums: dict[str, float] = defaultdict(float)
        extra_counts: dict[str, int] = defaultdict(int)
        cos_sum, cos_n, n_batches = 0.0, 0, 0
        clip = self.optim_cfg.grad_clip if self.optim_cfg.grad_clip is not None else math.inf
        bar = tqdm(self.train_loader, desc=f"epoch {epoch + 1}/{self.optim_cfg.epochs}", disable=not self.progress,
                   leave=False, dynamic_ncols=True)
        for batch_index, batch in enumerate(bar):
            batch = move_batch(batch, self.device)
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                report = self._strategy_step(batch)
            losses = {k: float(v) for k, v in report.losses.items()}
            losses["total"] = float(report.total)
            bad_loss = not all(math.isfinite(v) for v in losses.values())
            if self._any_rank(bad_loss):
                raise self._diverged(epoch, batch_index, "non-finite loss", losses)
            self._check_trend(epoch, batch_index, losses)
            all_reduce_gradients(self.params, self.dist)
            # clip_grad_norm_ with max_norm=inf only measures the norm; a non-finite norm means a bad gradient.
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, clip))
            if not math.isfinite(grad_norm):
                raise self._diverged(epoch, batch_index, f"non-finite gradient norm {grad_norm}", losses)
            self.optimizer.step()
            self.scheduler.step()
            self.state.global_step += 1
            for key, value in losses.items():
                sums[key] += value
            if report.cosine is not None and math.isfinite(report.cosine):
                cos_sum += float(report.cosine)
                cos_n += 1
            for key, raw in report.extra.items():  # epoch means of finite values only (docs/interfaces.md)
                value = float(raw)
                extra_counts[key] += 0  # every key gets a column (NaN if never finite): same keys on every rank
                if math.isfinite(value):
                    extra_sums[key] += value
                    extra_counts[key] += 1
            n_batches += 1
            if self.logger is not None and self.state.global_step % self.training_cfg.log_every == 0:
                self.logger.log_step(
                    self.state.global_step,
                    {**losses, "cosine": report.cosine, "grad_norm": grad_norm,
                     "lr": float(self.scheduler.get_last_lr()[0]),
                     **{f"extra/{k}": float(v) for k, v in report.extra.items()}},
                )
            bar.set_postfix(total=f"{losses['total']:.4f}",
                            cos="-" if report.cosine is None else f"{report.cosine:+.3f}")
        means = {("total" if k == "total" else f"loss_{k}"): v / max(1, n_batches) for k, v in sums.items()}
        means["cosine"] = cos_sum / cos_n if cos_n else math.nan
        for key, count in extra_counts.items():
            means[f"extra_{key}"] = extra_sums[key] / count if count else math.nan
        return reduce_mean(means, self.dist, self.device)

    @staticmethod
    def _say(line: str) -> None:
        """One line on stdout, above any progress bar, flushed at once (a log file sees it now, not at exit)."""
        tqdm.write(line)
        sys.stdout.flush()

    def _strategy_step(self, batch: dict[str, Any]) -> StepReport:
        """One ``strategy.step`` (docs/interfaces.md); typed here because the strategy is held as an ``nn.Module``."""
        step: Callable[..., StepReport] = getattr(self.strategy, "step")  # noqa: B009
        return step(self.model, batch, self.loss_fn, self.state.global_step)

    def _validate(self) -> tuple[dict[str, float], float]:
        if self.validate is None:
            return {}, math.nan
        result = None
        if self.dist.is_main:
            metrics, score = self.validate(self.model)
            result = (flatten_scalars(metrics, prefix="val_"), float(score))
        synced: tuple[dict[str, float], float] = broadcast_object(result, self.dist)
        return synced

    def fit(self) -> TrainState:
        """Train from ``self.state.epoch`` to ``optim.epochs`` (or early stop). Returns the final state."""
        self.logger = RunLogger(self.out_dir, enabled=self.dist.is_main, history=self._history,
                                global_step=self.state.global_step)
        epochs = self.optim_cfg.epochs
        patience = self.training_cfg.early_stopping_patience
        if self.probe is not None:
            if self.state.epoch == 0:
                self.probe.record(self.model, 0)
            else:
                self.probe.load()
        try:
            for epoch in range(self.state.epoch, epochs):
                started = time.perf_counter()
                row: dict[str, Any] = {"epoch": epoch + 1, "lr": self.scheduler.get_last_lr()[0]}
                row.update(self._train_epoch(epoch))
                sync_buffers(self.model, self.dist)
                last_epoch = epoch + 1 == epochs
                stop = False
                if (epoch + 1) % self.training_cfg.val_every == 0 or last_epoch:
                    metrics, score = self._validate()
                    if self.probe is not None:
                        self.probe.record(self.model, epoch + 1)
                    row.update(metrics)
                    row["val_score"] = score
                    if self.validate is None or (math.isfinite(score) and score > self.state.best_score):
                        self.state.best_score = score if math.isfinite(score) else self.state.best_score
                        self.state.best_epoch = epoch + 1
                        self.state.bad_validations = 0
                        self.state.epoch = epoch + 1
                        self.save(self.best_path)
                    else:
                        self.state.bad_validations += 1
                        stop = patience is not None and self.state.bad_validations >= patience
                row["global_step"] = self.state.global_step
                row["time_s"] = time.perf_counter() - started
                self.logger.log_epoch(row)
                if self.epoch_lines:
                    self._say(epoch_line(row, epochs))
                self.state.epoch = epoch + 1
                if stop or last_epoch or (epoch + 1) % self.training_cfg.checkpoint_every == 0:
                    self.save(self.last_path)
                if stop:
                    self.state.stopped_early = True
                    if self.dist.is_main:
                        self._say(f"early stopping after epoch {epoch + 1}: no improvement in {patience} validations")
                    break
        finally:
            self.logger.close()
        return self.state


def epoch_line(row: Mapping[str, Any], epochs: int) -> str:
    """``epoch 3/20: loss 1.2345 (seg 0.4120, cls 0.8225), cosine +0.123, val_score 0.4567, 12.3 s``: one epoch of
    ``log.csv`` as the line :class:`Trainer` prints."""
    parts = [f"{key[len('loss_'):]} {float(value):.4f}" for key, value in row.items()
             if key.startswith("loss_") and isinstance(value, int | float)]
    line = f"epoch {row['epoch']}/{epochs}: loss {float(row.get('total', math.nan)):.4f}"
    line += f" ({', '.join(parts)})" if parts else ""
    cosine = row.get("cosine")
    if isinstance(cosine, int | float) and math.isfinite(cosine):
        line += f", cosine {cosine:+.3f}"
    if "val_score" in row:
        line += f", val_score {float(row['val_score']):.4f}"
    return line + f", {float(row.get('time_s', math.nan)):.1f} s"
