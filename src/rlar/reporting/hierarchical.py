"""A comparison's interval that includes the variation between trainings, and the smallest effect the grid could
detect (docs/experiments.md, "What a comparison's interval includes, and what it could detect").

A grid compares arms A and B on the same test images of the same folds; each (arm, seed, fold) is one training.
The difference D of a metric (Dice: mean over the test images pooled across folds and seeds; macro-F1: pooled over
the labelled test images; binary AUROC: mean over the runs of each run's AUROC) varies for two reasons: the test
patients are a sample, and each training is one draw of the training noise (initialisation, batch order, the
machine's rounding). :func:`hierarchical_comparison` resamples both:

1. **seeds**, within each fold and independently per arm: run (k, f) of A and run (k, f) of B share a seed number
   only (the two methods consume the random stream differently, so they are not paired trainings), and runs
   (k, f) and (k, f') train on different data, so a seed is not a unit shared by the folds either; resampling
   within folds also copes with seeds that have not finished every fold;
2. **patients**, within each fold's test set, the same draw for A and B (the pairing that gives the comparison its
   power); every image of a drawn patient comes along. Folds that share patients (an external source, which every
   fold's model scores) get one draw for all folds.

With one seed per arm the seed level has nothing to resample and the interval is the patient bootstrap (within
folds). The bootstrap's draws are fixed by ``seed``, and the patient draws come first, so a grid whose seeds agree
exactly gets the same interval as its one-seed version.

The minimum detectable effect (80 % power, two-sided alpha 0.05) is ``(z_0.975 + z_0.8) * SE`` with
``SE^2 = V_train + V_patient``:

- ``V_patient``: the variance of D under the patient bootstrap with every arm's runs fixed;
- ``V_train = sum_X sigma2_X * sum_f w_Xf^2 / S_Xf``: ``sigma2_X`` the variance between trainings of arm X's
  per-fold metric, net of the test-set sampling noise that makes two trainings differ on one test set (that part is
  already in ``V_patient``); estimated per fold as ``2 var_s(m_s) - mean_r var_s(m_s^(r))`` (m_s the run's metric,
  m_s^(r) the same on patient-bootstrap replicate r: the second term is var_s(m_s) plus the sampling noise, which
  the first subtracts, as an ANOVA subtracts the residual mean square from the seed mean square), pooled over the
  folds with (S_f - 1) weights and floored at 0; ``w_Xf`` fold f's share of D's denominator, ``S_Xf`` its seeds.
  One seed per arm: not estimable, so the MDE is a lower bound (patient variance only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from rlar.reporting.collect import RunRecord

#: z_{1-alpha/2} + z_{power} for alpha 0.05 two-sided and 80 % power (= 2.8016).
Z_MDE = float(stats.norm.ppf(0.975) + stats.norm.ppf(0.80))
#: Metrics with a hierarchical interval; ``auroc`` only in the binary label space.
HIERARCHICAL_METRICS: tuple[str, ...] = ("dice", "macro_f1", "auroc")


# ------------------------------------------------------------------------------------------- metric kernels
#
# A kernel turns one run's values on a fold's rows and a batch of row weights (R, n) into additive statistics
# (R, q): the statistics of several runs (and folds) add up, and ``finish`` turns a sum into the metric.


def group_sums(weights: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """(R, n_groups) sums of the columns of ``weights`` (R, n) by ``groups`` (n,) in 0..n_groups-1 (no BLAS: a
    matrix product with a one-hot matrix is slower here, where BLAS threads compete with training)."""
    out = np.zeros((weights.shape[0], n_groups))
    if groups.size == 0:
        return out
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    out[:, sorted_groups[starts]] = np.add.reduceat(weights[:, order], starts, axis=1)
    return out


def weighted_auroc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of ``scores`` for binary ``labels`` (0/1) under each row of ``weights`` (R, n) (ties count one half);
    NaN where a replicate has no positive or no negative weight."""
    values, group = np.unique(scores, return_inverse=True)
    pos = group_sums(weights * (labels == 1), group, values.size)
    neg = group_sums(weights * (labels == 0), group, values.size)
    below = np.cumsum(neg, axis=1) - neg
    num = (pos * (below + 0.5 * neg)).sum(axis=1)
    den = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def macro_f1_from_counts(counts: np.ndarray, k: int) -> np.ndarray:
    """Macro-F1 of confusion counts (..., k*k) (truth-major), over the classes occurring in truth or prediction
    (the convention of rlar.evaluation.metrics)."""
    cm = counts.reshape(*counts.shape[:-1], k, k)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    both = cm.sum(axis=-1) + cm.sum(axis=-2)
    occurring = both > 0
    f1 = np.where(occurring, 2 * tp / np.maximum(both, 1e-12), 0.0)
    n = occurring.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, f1.sum(axis=-1) / np.maximum(n, 1), np.nan)


@dataclass(frozen=True)
class Kernel:
    """How a metric is summed over runs: ``kind`` is ``mean`` (Dice: per-image values), ``f1`` (predicted classes
    against ``labels``, ``k`` classes) or ``auroc`` (scores against binary ``labels``, one AUROC per run)."""

    kind: str
    k: int = 2

    def stats(self, values: np.ndarray, labels: np.ndarray | None, weights: np.ndarray) -> np.ndarray:
        """(S, R, q) statistics of S runs' ``values`` (S, n) under row ``weights`` (R, n)."""
        if self.kind == "mean":
            total = weights.sum(axis=1)
            return np.stack([np.stack([(weights * row).sum(axis=1), total], axis=-1) for row in values])
        assert labels is not None
        if self.kind == "f1":
            out = []
            for row in values.astype(np.int64):
                out.append(group_sums(weights, labels * self.k + row, self.k * self.k))
            return np.stack(out)
        out = []
        for row in values:
            auc = weighted_auroc(row, labels, weights)
            ok = np.isfinite(auc)
            out.append(np.stack([np.where(ok, auc, 0.0), ok.astype(np.float64)], axis=-1))
        return np.stack(out)

    def finish(self, totals: np.ndarray) -> np.ndarray:
        if self.kind == "f1":  # a scaled seed deviation can push a rare cell below 0: it counts as empty
            return macro_f1_from_counts(np.maximum(totals, 0.0), self.k)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(totals[..., 1] > 0, totals[..., 0] / np.where(totals[..., 1] > 0, totals[..., 1], 1.0),
                            np.nan)

    def denominator(self, totals: np.ndarray) -> np.ndarray:
        """The part of ``totals`` that weighs a fold in the pooled metric (images, labelled images, runs)."""
        return totals.sum(axis=-1) if self.kind == "f1" else totals[..., 1]


# ------------------------------------------------------------------------------------------------ the data


@dataclass(frozen=True)
class FoldData:
    """One fold of a comparison: its rows (test images that count for the metric, common to every run of both
    arms in the fold), their patients (0..P-1), each arm's runs' values (S, n) and the shared labels."""

    fold: int
    patient: np.ndarray
    n_patients: int
    a: np.ndarray
    b: np.ndarray
    labels: np.ndarray | None = None
    #: The patients' ids (P,): when folds share patients (an external source that every fold's model scores), the
    #: patients are drawn once for all folds instead of within each fold.
    patient_ids: np.ndarray | None = None


@dataclass(frozen=True)
class HierarchicalResult:
    """A comparison's hierarchical interval and its power (see the module docstring); NaN where undefined."""

    estimate: float
    low: float
    high: float
    #: Standard deviation of the hierarchical bootstrap replicates.
    se_bootstrap: float
    #: Seeds per arm: the largest number of runs of A (B) in one fold.
    seeds_a: int
    seeds_b: int
    #: sigma2 of each arm (variance between trainings of a fold's metric); NaN: one seed, not estimable.
    var_train_a: float
    var_train_b: float
    #: V_train (NaN terms as 0) and V_patient.
    var_train: float
    var_patient: float
    se: float
    mde: float
    #: True when V_train has an estimate for both arms (two or more seeds in some fold); otherwise the MDE is a
    #: lower bound.
    train_variance_estimated: bool
    n_patients: int
    n_folds: int

    @property
    def hierarchical(self) -> bool:
        """Whether the interval resampled seeds (some arm has two or more seeds in a fold)."""
        return max(self.seeds_a, self.seeds_b) >= 2


def _draw_weights(folds: Sequence[FoldData], n_resamples: int, rng: np.random.Generator
                  ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Patient draws (R, n rows) per fold first (within each fold, or once for all folds when they share
    patients), then seed counts (R, S) per fold for A, then for B."""
    rows = []
    ids = [f.patient_ids for f in folds]
    if all(i is not None for i in ids) and len(folds) > 1:
        names, inverse = np.unique(np.concatenate([i for i in ids if i is not None]), return_inverse=True)
        shared = names.size < inverse.size
    else:
        shared = False
    if shared:
        p = names.size
        counts = rng.multinomial(p, np.full(p, 1.0 / p), size=n_resamples).astype(np.float64)
        start = 0
        for fold in folds:
            local = inverse[start:start + fold.n_patients]
            start += fold.n_patients
            rows.append(counts[:, local[fold.patient]])
    else:
        for fold in folds:
            p = fold.n_patients
            counts = rng.multinomial(p, np.full(p, 1.0 / p), size=n_resamples).astype(np.float64)
            rows.append(counts[:, fold.patient])
    seeds = []
    for arm in ("a", "b"):
        for fold in folds:
            s = getattr(fold, arm).shape[0]
            seeds.append(rng.multinomial(s, np.full(s, 1.0 / s), size=n_resamples).astype(np.float64))
    return rows, seeds[:len(folds)], seeds[len(folds):]


def _seed_spread(kernel: Kernel, per_run_full: np.ndarray, per_run_boot: np.ndarray) -> tuple[float, float, int]:
    """(var_s(m_s), mean_r var_s(m_s^(r)), S - 1) of one arm in one fold; NaNs and 0 for S < 2."""
    s = per_run_full.shape[0]
    if s < 2:
        return math.nan, math.nan, 0
    full = kernel.finish(per_run_full)  # (S,)
    boot = kernel.finish(per_run_boot)  # (S, R)
    keep = np.all(np.isfinite(boot), axis=0)
    if not np.all(np.isfinite(full)) or not keep.any():
        return math.nan, math.nan, 0
    return float(full.var(ddof=1)), float(boot[:, keep].var(axis=0, ddof=1).mean()), s - 1


def hierarchical_comparison(folds: Sequence[FoldData], kernel: Kernel, n_resamples: int, seed: int,
                            confidence: float = 0.95) -> HierarchicalResult:
    """The hierarchical bootstrap interval of D = metric(A) - metric(B) and its MDE (module docstring)."""
    folds = [f for f in folds if f.n_patients > 0 and f.a.shape[0] > 0 and f.b.shape[0] > 0]
    seeds_a = max((f.a.shape[0] for f in folds), default=0)
    seeds_b = max((f.b.shape[0] for f in folds), default=0)
    n_patients = int(sum(f.n_patients for f in folds))
    nan = math.nan
    if not folds:
        return HierarchicalResult(nan, nan, nan, nan, 0, 0, nan, nan, nan, nan, nan, nan, False, 0, 0)
    rng = np.random.default_rng(seed)
    weights, counts_a, counts_b = _draw_weights(folds, n_resamples, rng)
    arms = {"a": counts_a, "b": counts_b}
    # Pass 1: every run's statistics on the whole test set and on each patient replicate, and the seed spreads.
    full: dict[str, list[np.ndarray]] = {"a": [], "b": []}
    boot: dict[str, list[np.ndarray]] = {"a": [], "b": []}
    spread: dict[str, list[tuple[float, float, int]]] = {"a": [], "b": []}
    for fold, w in zip(folds, weights):
        ones = np.ones((1, fold.patient.size))
        for arm in arms:
            values = getattr(fold, arm)
            full[arm].append(kernel.stats(values, fold.labels, ones)[:, 0])  # (S, q)
            boot[arm].append(kernel.stats(values, fold.labels, w))  # (S, R, q)
            spread[arm].append(_seed_spread(kernel, full[arm][-1], boot[arm][-1]))
    # sigma2 of each arm: 2 var_s(m_s) - mean_r var_s(m_s^(r)), pooled over folds with S - 1 weights, floored at 0.
    sigma2: dict[str, float] = {}
    for arm in arms:
        pairs = [(2 * v - b, df) for v, b, df in spread[arm] if df > 0]
        sigma2[arm] = max(0.0, sum(x * df for x, df in pairs) / sum(df for _, df in pairs)) if pairs else nan
    # Pass 2: sums over folds; the hierarchical replicates draw seeds with their deviations scaled by lambda, so
    # that the drawn seed mean varies by sigma2 / S (the training part), not by the spread on one test set, whose
    # sampling noise the patient level already has: lambda^2 = sigma2 S / ((S - 1) mean_r var_s(m_s^(r))).
    totals_full, totals_fixed, totals_hier = {}, {}, {}
    var_train = 0.0
    for arm, counts in arms.items():
        tf = tx = th = 0.0
        dens = []
        for f_full, f_boot, (_, b, df), c in zip(full[arm], boot[arm], spread[arm], counts):
            s = f_boot.shape[0]
            mean = f_boot.mean(axis=0)  # (R, q)
            tf, tx = tf + f_full.sum(axis=0), tx + s * mean
            lam = math.sqrt(sigma2[arm] * s / (df * b)) if df > 0 and b > 0 and math.isfinite(sigma2[arm]) else 0.0
            th = th + s * mean + lam * np.einsum("rs,srq->rq", c, f_boot - mean)
            dens.append((float(kernel.denominator(f_full.sum(axis=0))), s))
        totals_full[arm], totals_fixed[arm], totals_hier[arm] = tf, tx, th
        total = sum(d for d, _ in dens)
        if math.isfinite(sigma2[arm]) and total > 0:
            var_train += sigma2[arm] * sum((d / total) ** 2 / s for d, s in dens)

    def difference(totals: dict[str, Any]) -> np.ndarray:
        return np.asarray(kernel.finish(np.asarray(totals["a"])) - kernel.finish(np.asarray(totals["b"])))

    estimate = float(difference(totals_full))
    fixed_d, hier_d = difference(totals_fixed), difference(totals_hier)
    enough = max(2, n_resamples // 2)
    alpha = (1.0 - confidence) / 2.0
    finite = hier_d[np.isfinite(hier_d)]
    if finite.size >= enough and math.isfinite(estimate):
        low, high = (float(x) for x in np.quantile(finite, [alpha, 1.0 - alpha]))
        se_boot = float(finite.std(ddof=1))
    else:
        low = high = se_boot = nan
    fixed_finite = fixed_d[np.isfinite(fixed_d)]
    var_patient = float(fixed_finite.var(ddof=1)) if fixed_finite.size >= enough else nan
    se = math.sqrt(var_train + var_patient) if math.isfinite(var_patient) else nan
    estimated = math.isfinite(sigma2["a"]) and math.isfinite(sigma2["b"])
    return HierarchicalResult(estimate, low, high, se_boot, seeds_a, seeds_b, sigma2["a"], sigma2["b"], var_train,
                              var_patient, se, Z_MDE * se, estimated, n_patients, len(folds))


# ------------------------------------------------------------------------------------- from a grid's runs


def _fold_runs(runs: list[RunRecord], key: str) -> dict[int, list[RunRecord]]:
    out: dict[int, list[RunRecord]] = {}
    for run in sorted(runs, key=lambda r: (r.fold, r.seed)):
        if key in run.frames:
            out.setdefault(run.fold, []).append(run)
    return out


def aligned_values(frames: Sequence[pd.DataFrame], metric: str, space: str
                   ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, Kernel] | None:
    """What a metric is computed from, for runs whose prediction ``frames`` hold the same images in the same order:
    (values (S, n): per-image Dice, predicted class or binary score; labels (n,) or None for Dice; keep (n,): the
    images that count for the metric; the metric's :class:`Kernel`). None when the metric is undefined here."""
    from rlar.reporting.tables import classification_inputs

    labels: np.ndarray | None = None
    if metric == "dice":
        if any("dice" not in f.columns for f in frames):
            return None
        values = np.stack([f["dice"].to_numpy(dtype=np.float64) for f in frames])
        keep = np.all(np.isfinite(values), axis=0)
        if "has_mask" in frames[0].columns:
            keep &= frames[0]["has_mask"].astype(bool).to_numpy()
        return values, labels, keep, Kernel("mean")
    if metric == "auroc" and space != "binary":
        return None
    inputs = [classification_inputs(f, space) for f in frames]
    if any(i is None for i in inputs):
        return None
    probs = [i[0] for i in inputs if i is not None]
    first = inputs[0]
    assert first is not None
    labels, names = first[1], first[2]
    keep = labels >= 0
    if metric == "auroc":
        return np.stack([p[:, 1] for p in probs]), labels, keep, Kernel("auroc")
    return np.stack([p.argmax(axis=1) for p in probs]).astype(np.float64), labels, keep, Kernel("f1", len(names))


def common_frames(runs: Sequence[RunRecord], key: str) -> list[pd.DataFrame]:
    """The ``key`` prediction frames of ``runs``, restricted to the images every one of them scored, in image-id
    order (an image counted twice in a frame counts once); empty frames when they share no image."""
    frames = [r.frames[key].drop_duplicates("image_id").set_index("image_id", drop=False) for r in runs]
    common = frames[0].index
    for frame in frames[1:]:
        common = common.intersection(frame.index, sort=False)
    common = pd.Index(sorted(common))
    return [f.loc[common] for f in frames]


def build_folds(runs_a: list[RunRecord], runs_b: list[RunRecord], key: str, metric: str, space: str
                ) -> tuple[list[FoldData], Kernel] | None:
    """The folds of a comparison of ``metric`` (``dice``, ``macro_f1``, or ``auroc`` in the binary space) for
    :func:`hierarchical_comparison`; None when the metric is undefined for these runs."""
    by_a, by_b = _fold_runs(runs_a, key), _fold_runs(runs_b, key)
    folds: list[FoldData] = []
    kernel: Kernel | None = None
    for fold in sorted(set(by_a) & set(by_b)):
        frames = common_frames([*by_a[fold], *by_b[fold]], key)
        if frames[0].empty:
            continue
        aligned = aligned_values(frames, metric, space)
        if aligned is None:
            return None
        values, labels, keep, kernel = aligned
        if not keep.any():
            continue
        n_a = len(by_a[fold])
        patients = frames[0]["patient_id"].astype(str).to_numpy()[keep]
        uniq, index = np.unique(patients, return_inverse=True)
        folds.append(FoldData(fold, index.astype(np.int64), len(uniq), values[:n_a][:, keep], values[n_a:][:, keep],
                              None if labels is None else labels[keep], uniq))
    if not folds or kernel is None:
        return None
    return folds, kernel


def compare_hierarchical(runs_a: list[RunRecord], runs_b: list[RunRecord], key: str, metric: str, space: str,
                         n_resamples: int, seed: int) -> HierarchicalResult | None:
    """:func:`hierarchical_comparison` of two arms' runs on one evaluation; None when the metric is undefined."""
    built = build_folds(runs_a, runs_b, key, metric, space)
    if built is None:
        return None
    return hierarchical_comparison(built[0], built[1], n_resamples, seed)


__all__ = ["HIERARCHICAL_METRICS", "Z_MDE", "FoldData", "HierarchicalResult", "Kernel", "aligned_values",
           "build_folds", "common_frames", "compare_hierarchical", "group_sums", "hierarchical_comparison",
           "macro_f1_from_counts", "weighted_auroc"]
