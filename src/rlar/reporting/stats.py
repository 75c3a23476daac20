"""Paired statistics for comparing two methods evaluated on the same test images.

- :func:`cluster_bootstrap_ci`: percentile bootstrap CI of a paired difference, resampling *patients* (all images of
  a drawn patient come along), via :func:`scipy.stats.bootstrap` with a fixed seed; images of one patient are not
  independent, so resampling images would give too narrow an interval.
- :func:`wilcoxon_p`: two-sided Wilcoxon signed-rank test (scipy) on per-patient paired scores; zero differences
  are dropped (Wilcoxon's convention, ``zero_method="wilcox"``); all-zero differences give p = 1.
- :func:`corrected_resampled_ttest`: Nadeau & Bengio (2003) corrected resampled t-test on per-fold differences.
  k-fold test sets are disjoint but the training sets overlap, so fold scores are positively correlated and the
  plain t-test is anti-conservative; the variance is inflated from s^2/J to (1/J + n_test/n_train) s^2, df = J - 1.
- :func:`holm`: Holm (1979) step-down adjustment of a family of p-values (family-wise error control).

Everything here is deterministic given its inputs and seed, so a report regenerates byte for byte.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

#: Defaults of the report's bootstrap (fixed so that reports are reproducible).
N_BOOTSTRAP = 2000
BOOTSTRAP_SEED = 20260302
CONFIDENCE = 0.95


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values, in the input order. NaN entries stay NaN and are not counted in the family.

    p_(i) sorted ascending over m tests -> adjusted_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    if m == 0:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        out[index] = running
    return out


@dataclass(frozen=True)
class TTest:
    """Result of :func:`corrected_resampled_ttest`."""

    mean: float
    t: float
    df: int
    p: float


def corrected_resampled_ttest(differences: Sequence[float], n_train: float, n_test: float) -> TTest:
    """Nadeau-Bengio corrected resampled t-test of H0: mean difference = 0 over J folds (two-sided).

    Args:
        differences: per-fold (and per-seed) metric differences a - b, J >= 2 of them (NaNs are dropped).
        n_train, n_test: training and test set sizes of one fold (the mean over folds when they vary).
    """
    d = np.asarray(differences, dtype=np.float64)
    d = d[np.isfinite(d)]
    j = d.size
    if j < 2:
        return TTest(float(d.mean()) if j else math.nan, math.nan, max(j - 1, 0), math.nan)
    if n_train <= 0 or n_test <= 0:
        raise ValueError(f"n_train and n_test must be positive, got {n_train}, {n_test}")
    mean = float(d.mean())
    var = float(d.var(ddof=1))
    scale = math.sqrt((1.0 / j + n_test / n_train) * var)
    if scale == 0.0:
        # Identical differences on every fold: no spread to test against.
        return TTest(mean, math.nan if mean == 0 else math.copysign(math.inf, mean), j - 1, 1.0 if mean == 0 else 0.0)
    t = mean / scale
    return TTest(mean, float(t), j - 1, float(2.0 * stats.t.sf(abs(t), j - 1)))


def wilcoxon_p(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired scores (NaN pairs dropped); see the module docstring."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired scores need equal shapes, got {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    d = x[keep] - y[keep]
    if d.size == 0:
        return math.nan
    if not np.any(d != 0):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sample size too small for normal approximation"
        return float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


@dataclass(frozen=True)
class BootstrapCI:
    """Point estimate and percentile confidence interval of a paired difference."""

    estimate: float
    low: float
    high: float
    n_groups: int


def cluster_bootstrap_ci(statistic: Callable[[np.ndarray], Any], n_groups: int, *, n_resamples: int = N_BOOTSTRAP,
                         seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE,
                         vectorized: bool = False) -> BootstrapCI:
    """Percentile CI of ``statistic(groups)``, where ``groups`` is an index array of drawn patients (0..n-1, with
    repetition); the estimate is ``statistic(arange(n))``. scipy's bootstrap draws the patient indices.

    ``vectorized``: ``statistic`` takes a (B, n) array of B draws and returns (B,) values (one call for all the
    resamples instead of one per resample)."""
    if n_groups < 1:
        return BootstrapCI(math.nan, math.nan, math.nan, 0)
    everyone = np.arange(n_groups)
    estimate = float(np.asarray(statistic(everyone[None, :])).reshape(-1)[0]) if vectorized \
        else float(statistic(everyone))
    if n_groups < 2 or not math.isfinite(estimate):
        return BootstrapCI(estimate, math.nan, math.nan, n_groups)

    def batch(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        draws = np.asarray(idx, dtype=np.int64)
        values = np.asarray(statistic(draws.reshape(-1, draws.shape[-1])), dtype=np.float64)
        return values.reshape(draws.shape[:-1])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a degenerate resample: scipy reports NaN bounds
        warnings.simplefilter("ignore", UserWarning)
        if vectorized:
            result = stats.bootstrap((everyone,), batch, vectorized=True, n_resamples=n_resamples,
                                     confidence_level=confidence, method="percentile",
                                     rng=np.random.default_rng(seed))
        else:
            result = stats.bootstrap((everyone,), lambda idx: statistic(np.asarray(idx, dtype=np.int64)),
                                     vectorized=False, n_resamples=n_resamples, confidence_level=confidence,
                                     method="percentile", rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return BootstrapCI(estimate, float(low), float(high), n_groups)


__all__ = ["BOOTSTRAP_SEED", "CONFIDENCE", "N_BOOTSTRAP", "BootstrapCI", "TTest", "cluster_bootstrap_ci",
           "corrected_resampled_ttest", "holm", "wilcoxon_p"]
