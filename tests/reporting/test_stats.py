"""The report's statistics against hand-computed and scipy reference values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from rlar.reporting.stats import cluster_bootstrap_ci, corrected_resampled_ttest, holm, wilcoxon_p


def test_holm_matches_hand_computation() -> None:
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> monotone 0.06; NaN is not in the family
    adjusted = holm([0.01, 0.04, 0.03, math.nan, 0.005])
    np.testing.assert_allclose(adjusted[[0, 1, 2, 4]], [0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[3])
    assert holm([0.6, 0.9]).tolist() == [1.0, 1.0]  # capped at 1
    assert holm([]).size == 0


def test_nadeau_bengio_statistic_by_hand() -> None:
    d = [0.02, 0.03, 0.01, 0.04, 0.02]
    # mean 0.024, sample variance 0.00052 / 4 = 0.00013; corrected variance (1/5 + 25/100) * 0.00013
    result = corrected_resampled_ttest(d, n_train=100, n_test=25)
    t = 0.024 / math.sqrt((1 / 5 + 25 / 100) * 0.00013)
    assert result.t == pytest.approx(t) and result.df == 4
    assert result.p == pytest.approx(2 * stats.t.sf(t, 4))
    # the correction only ever widens: with n_test/n_train -> 0 it is the ordinary one-sample t-test
    plain = corrected_resampled_ttest(d, n_train=1e12, n_test=1e-6)
    reference = stats.ttest_1samp(d, 0.0)
    assert plain.t == pytest.approx(reference.statistic) and plain.p == pytest.approx(reference.pvalue)
    assert result.p > plain.p


def test_nadeau_bengio_degenerate_cases() -> None:
    assert math.isnan(corrected_resampled_ttest([0.1], 10, 2).p)  # one fold: no variance
    same = corrected_resampled_ttest([0.0, 0.0, 0.0], 10, 2)
    assert same.p == 1.0


def test_wilcoxon_matches_scipy_and_handles_ties() -> None:
    a = np.array([0.9, 0.8, 0.75, 0.6, 0.95, 0.7, 0.85])
    b = np.array([0.85, 0.7, 0.8, 0.5, 0.9, 0.6, 0.84])
    assert wilcoxon_p(a, b) == pytest.approx(stats.wilcoxon(a - b).pvalue)
    assert wilcoxon_p([0.5, 0.5], [0.5, 0.5]) == 1.0
    assert math.isnan(wilcoxon_p([math.nan], [0.3]))


def test_cluster_bootstrap_ci_covers_the_true_difference() -> None:
    # 80 patients with 1-3 images each; method a is better by 0.05 on average, with patient-level noise.
    rng = np.random.default_rng(0)
    n = 80
    sizes = rng.integers(1, 4, size=n)
    effects = 0.05 + rng.normal(0, 0.05, size=n)
    diff_per_image = [effects[p] + rng.normal(0, 0.02, size=sizes[p]) for p in range(n)]
    sums = np.array([d.sum() for d in diff_per_image])

    def statistic(groups: np.ndarray) -> float:
        return float(sums[groups].sum() / sizes[groups].sum())

    ci = cluster_bootstrap_ci(statistic, n, n_resamples=1000, seed=1)
    assert ci.low < 0.05 < ci.high and ci.low > 0.0  # covers the truth, excludes "no difference"
    assert ci.estimate == pytest.approx(np.concatenate(diff_per_image).mean())
    again = cluster_bootstrap_ci(statistic, n, n_resamples=1000, seed=1)
    assert (again.low, again.high) == (ci.low, ci.high)  # fixed seed: reproducible
