import json

import numpy as np
import pytest

from ftcompile.runtime.stats import strict_json, summarize, t_quantile


# two-sided 95% Student-t quantiles from printed tables
@pytest.mark.parametrize("dof,expected", [(1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (9, 2.2622),
                                          (29, 2.0452), (99, 1.9842)])
def test_t_quantile(dof, expected):
    assert t_quantile(0.975, dof) == pytest.approx(expected, abs=1e-4)


def test_t_quantile_matches_scipy_over_a_grid_of_real_degrees_of_freedom():
    from scipy import stats

    dofs = [*np.linspace(1, 30, 59), *np.geomspace(30, 1e9, 40), 0.5, 0.7]  # Welch gives real dof >= 1
    ps = [0.51, 0.6, 0.75, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999, 0.9995]
    ours = np.array([[t_quantile(p, dof) for p in ps] for dof in dofs])
    assert ours == pytest.approx(stats.t.ppf(np.array(ps)[None], np.array(dofs)[:, None]), rel=1e-11, abs=1e-12)
    assert t_quantile(0.025, 7.5) == -t_quantile(0.975, 7.5)
    assert t_quantile(0.975, float("inf")) == pytest.approx(stats.norm.ppf(0.975), rel=1e-15)
    assert t_quantile(0.975, 0) == float("inf")  # no degrees of freedom: no interval


@pytest.mark.parametrize("k", [5, 20])
def test_drift_interval_coverage(k):
    rng = np.random.default_rng(0)
    reps = 3000
    stats = [summarize(rng.normal(0.7, 0.05, k)) for _ in range(reps)]
    hits = sum(s.drift_ci_low <= 0.7 <= s.drift_ci_high for s in stats)
    # a 95% interval covers the true mean 95% of the time; 4 binomial std either way
    assert abs(hits / reps - 0.95) < 4 * np.sqrt(0.95 * 0.05 / reps)


def _crossed(rng, n, k):
    """K drift samples x n examples of 0/1 scores; the population accuracy is 0.8 exactly."""
    p = rng.beta(4, 1, n)                     # each example's chance of being right (population mean 0.8)
    shift = rng.normal(0, 0.01, k)            # some drift samples hurt everything a bit more
    a = rng.random((k, n)) < np.clip(p[None, :] + shift[:, None], 0, 1)
    return a.mean(1), a.mean(0)


def test_total_interval_covers_the_population_and_drift_only_does_not():
    rng = np.random.default_rng(1)
    reps, total, drift_only = 600, 0, 0
    for _ in range(reps):
        values, example_means = _crossed(rng, n=300, k=100)
        s = summarize(values, example_means=example_means)
        total += s.total_ci_low <= 0.8 <= s.total_ci_high
        drift_only += s.drift_ci_low <= 0.8 <= s.drift_ci_high
    assert 0.93 <= total / reps <= 0.995  # nominal 95%, slightly conservative by construction
    assert drift_only / reps < 0.6        # the drift-only interval ignores the example set


def test_one_sample_has_no_interval_and_says_why():
    s = summarize([0.9])
    assert s.drift_ci_low is None and s.total_ci_high is None and "2 drift samples" in s.ci_note
    text = json.dumps(strict_json({"x": float("inf"), "y": [float("nan"), 1.0]}), allow_nan=False)
    assert json.loads(text) == {"x": None, "y": [None, 1.0]}


def test_total_interval_needs_a_per_example_metric():
    s = summarize([0.5, 0.6, 0.7])
    assert s.drift_ci_low is not None and s.total_ci_low is None and "mean over examples" in s.ci_note


def test_percentiles():
    s = summarize(np.arange(101) / 100)
    assert (s.p5, s.p50, s.p95, s.min, s.max) == pytest.approx((0.05, 0.5, 0.95, 0.0, 1.0))
    assert s.mean == pytest.approx(0.5)
