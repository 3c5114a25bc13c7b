import numpy as np
import pytest

from ftcompile.runtime.stats import summarize, t_quantile


@pytest.mark.parametrize("dof,expected", [(4, 2.7764), (9, 2.2622), (29, 2.0452), (99, 1.9842), (2, 4.3027)])
def test_t_quantile(dof, expected):
    assert t_quantile(0.975, dof) == pytest.approx(expected, abs=2e-3)


@pytest.mark.parametrize("k", [5, 20])
def test_confidence_interval_coverage(k):
    rng = np.random.default_rng(0)
    reps = 3000
    hits = sum(s.ci_low <= 0.7 <= s.ci_high for s in (summarize(rng.normal(0.7, 0.05, k)) for _ in range(reps)))
    # a 95% interval covers the true mean 95% of the time; 4 binomial std either way
    assert abs(hits / reps - 0.95) < 4 * np.sqrt(0.95 * 0.05 / reps)


def test_percentiles():
    s = summarize(np.arange(101) / 100)
    assert (s.p5, s.p50, s.p95, s.min, s.max) == pytest.approx((0.05, 0.5, 0.95, 0.0, 1.0))
    assert s.mean == pytest.approx(0.5)
