"""Statistics of Monte-Carlo validation: what the mean of K drift samples over n examples is worth.

Two intervals, both 95% by default, named for what they cover:

- ``drift_ci``: drift sampling only (Student-t over the K per-sample values). It answers "would another
  K drift samples on these same examples give the same mean?"; it is what layer rankings and trial
  comparisons under common random numbers need.
- ``total_ci``: drift sampling *and* the finite example set, the question a release gate asks ("is the
  accuracy on the deployment distribution above the bar?"). The K x n table of per-example scores is a
  crossed design (drift samples x examples); its mean's variance is estimated by the sum of the row and
  column variances, ``s_k^2 / K + s_i^2 / n`` (Owen, "The pigeonhole bootstrap", Ann. Appl. Stat. 2007:
  the sum is slightly conservative, it counts the interaction term twice), with Welch-Satterthwaite
  degrees of freedom. It needs a metric that is a mean over examples (accuracy, top-k); for any other
  metric it is left null and ``ci_note`` says why.

Quantiles: the normal one from the standard library (``statistics.NormalDist``, Wichura's AS 241); the Student-t
one computed here from its definition, not taken from scipy: ``scipy.stats`` was this package's only use of scipy,
cost 0.37 s of every CLI start (a CI gate runs the CLI once per job) and about 100 MB of install, for one quantile.
``t_quantile`` inverts the exact distribution function with Newton's method and agrees with ``scipy.stats.t.ppf``
to about 1e-12 over the degrees of freedom a validation produces (tests/runtime/test_stats.py compares them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

_NORMAL = NormalDist()


def t_quantile(p: float, dof: float) -> float:
    """Student-t quantile ``p`` (0 < p < 1) at ``dof`` degrees of freedom, any real ``dof``; ``inf`` for
    ``dof <= 0`` (no interval), the normal quantile for ``dof = inf``.

    Below 500 degrees of freedom: Newton's method on the upper tail ``Q(t) = I_x(dof/2, 1/2) / 2`` with
    ``x = dof / (dof + t^2)`` (Abramowitz & Stegun 26.7.1 through 26.5.27), started at the normal quantile. For
    ``t > 0`` ``Q`` is decreasing and convex and the t quantile lies beyond the normal one, so every Newton step
    stays short of the root: the iteration converges monotonically, with no bracketing. From 500 on: the
    Cornish-Fisher expansion in ``1/dof`` (A&S 26.7.5, four terms; its error there is below 1e-11), where the
    incomplete beta's continued fraction would need thousands of terms and ``lgamma`` loses digits.
    """
    if not 0 < p < 1:
        raise ValueError(f"t_quantile: p must lie in (0, 1), got {p}")
    if not dof > 0:
        return math.inf
    if p < 0.5:
        return -t_quantile(1 - p, dof)
    z = _NORMAL.inv_cdf(p)
    if p == 0.5 or dof == math.inf:
        return z
    if dof >= 500:
        return _cornish_fisher(z, dof)
    tail, t = 1 - p, z
    for _ in range(100):
        step = (_t_upper_tail(t, dof) - tail) / _t_density(t, dof)
        t += step
        if abs(step) <= 1e-13 * t:
            break
    return t


def normal_quantile(p: float) -> float:
    """Standard normal quantile ``p``."""
    return _NORMAL.inv_cdf(p)


def _cornish_fisher(z: float, dof: float) -> float:
    z2 = z * z
    terms = (z * (z2 + 1) / 4,
             z * ((5 * z2 + 16) * z2 + 3) / 96,
             z * (((3 * z2 + 19) * z2 + 17) * z2 - 15) / 384,
             z * ((((79 * z2 + 776) * z2 + 1482) * z2 - 1920) * z2 - 945) / 92160)
    return z + sum(g / dof ** (i + 1) for i, g in enumerate(terms))


def _t_density(t: float, dof: float) -> float:
    return math.exp(math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)
                    - (dof + 1) / 2 * math.log1p(t * t / dof))


def _t_upper_tail(t: float, dof: float) -> float:
    """P(T > t) for t >= 0; ``x`` and ``1 - x`` are formed apart so that neither loses digits to the other."""
    s = dof + t * t
    return 0.5 * _beta_regularized(dof / 2, 0.5, dof / s, t * t / s)


def _beta_regularized(a: float, b: float, x: float, y: float) -> float:
    """The regularized incomplete beta function ``I_x(a, b)``, ``y = 1 - x``: its continued fraction (DLMF 8.17.22)
    by the modified Lentz method, which converges fast for ``x < (a + 1) / (a + b + 2)``; beyond, the symmetry
    ``I_x(a, b) = 1 - I_y(b, a)`` (DLMF 8.17.4)."""
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _beta_regularized(b, a, y, x)
    tiny = 1e-300
    front = math.exp(a * math.log(x) + b * math.log(y) + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)) / a
    # 1 / (1 + d1 / (1 + d2 / (1 + ...))) with
    # d_{2m+1} = -(a+m)(a+b+m)x / ((a+2m)(a+2m+1)), d_{2m} = m(b-m)x / ((a+2m-1)(a+2m))
    f = c = tiny
    d = 0.0
    for j in range(1, 10_000):
        m = (j - 1) // 2
        if j == 1:
            num = 1.0
        elif j % 2 == 0:
            num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        else:
            num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 / (1.0 + num * d or tiny)  # Lentz: a zero denominator becomes tiny
        c = 1.0 + num / c or tiny
        f *= c * d
        if abs(c * d - 1.0) < 1e-16:
            break
    return front * f


@dataclass(frozen=True)
class SampleStats:
    """Summary of per-sample metric values; an interval is ``None`` where it cannot be estimated
    (``ci_note`` says why)."""

    mean: float
    std: float
    p5: float
    p50: float
    p95: float
    min: float
    max: float
    drift_ci_low: float | None
    drift_ci_high: float | None
    total_ci_low: float | None
    total_ci_high: float | None
    n: int
    examples: int = 0
    ci_note: str = ""


def summarize(values, confidence: float = 0.95, example_means=None) -> SampleStats:
    """Statistics of K per-sample values.

    Args:
        values: the metric of each drift sample (``K``).
        example_means: per-example score averaged over the K samples (``n``), when the metric is a mean
            over examples; enables the total interval.
    """
    v = np.asarray(values, dtype=np.float64)
    k = len(v)
    mean = float(v.mean())
    std = float(v.std(ddof=1)) if k > 1 else 0.0
    p5, p50, p95 = (float(x) for x in np.percentile(v, [5, 50, 95]))
    q = 0.5 + confidence / 2
    notes = []
    drift = total = (None, None)
    n = 0 if example_means is None else len(example_means)
    if k < 2:
        notes.append("intervals need >= 2 drift samples")
    else:
        half = t_quantile(q, k - 1) * std / math.sqrt(k)
        drift = (mean - half, mean + half)
        if example_means is None:
            notes.append("total interval needs a metric that is a mean over examples (accuracy, top-k)")
        elif n < 2:
            notes.append("total interval needs >= 2 examples")
        else:
            v_drift = std ** 2 / k
            v_ex = float(np.var(np.asarray(example_means, np.float64), ddof=1)) / n
            var = v_drift + v_ex
            denom = v_drift ** 2 / (k - 1) + v_ex ** 2 / (n - 1)
            dof = var ** 2 / denom if denom > 0 else math.inf
            half = t_quantile(q, dof) * math.sqrt(var)
            total = (mean - half, mean + half)
    return SampleStats(mean, std, p5, p50, p95, float(v.min()), float(v.max()), *drift, *total, k, n,
                       "; ".join(notes))


def strict_json(value):
    """``value`` with every NaN or infinity replaced by ``None`` (reports are strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def format_ci(low: float | None, high: float | None, scale: float = 100.0, sep: str = "-") -> str:
    """``"91.40-94.10"`` (in percent by default), or ``"n/a"`` for an interval that was not estimated."""
    if low is None or high is None:
        return "n/a"
    return f"{scale * low:.2f}{sep}{scale * high:.2f}"
