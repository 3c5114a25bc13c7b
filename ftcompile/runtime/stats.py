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

Quantiles come from ``scipy.stats`` (a well-kept library; botorch already needs scipy).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _stats


def t_quantile(p: float, dof: float) -> float:
    """Student-t quantile ``p`` at ``dof`` degrees of freedom (``inf`` for ``dof <= 0``)."""
    if not dof > 0:
        return math.inf
    return float(_stats.t.ppf(p, dof))


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
            half = (t_quantile(q, dof) if math.isfinite(dof) else float(_stats.norm.ppf(q))) * math.sqrt(var)
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
