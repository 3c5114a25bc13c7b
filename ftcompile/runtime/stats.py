"""Statistics of Monte-Carlo samples, including a Student-t confidence interval of the mean."""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np


def t_quantile(p: float, dof: int) -> float:
    """Student-t quantile by the Cornish-Fisher expansion around the normal (error < 1e-3 for dof >= 3)."""
    z = NormalDist().inv_cdf(p)
    if dof <= 0:
        return math.inf
    if dof == 1:
        return math.tan(math.pi * (p - 0.5))
    if dof == 2:
        q = 2 * p - 1
        return q * math.sqrt(2 / (1 - q * q))
    v = float(dof)
    return (z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
            + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * v**4))


@dataclass(frozen=True)
class SampleStats:
    """Summary of per-sample metric values."""

    mean: float
    std: float
    p5: float
    p50: float
    p95: float
    min: float
    max: float
    ci_low: float
    ci_high: float
    n: int


def summarize(values, confidence: float = 0.95) -> SampleStats:
    v = np.asarray(values, dtype=np.float64)
    n = len(v)
    mean = float(v.mean())
    std = float(v.std(ddof=1)) if n > 1 else 0.0
    half = t_quantile(0.5 + confidence / 2, n - 1) * std / math.sqrt(n) if n > 1 else math.inf
    p5, p50, p95 = (float(x) for x in np.percentile(v, [5, 50, 95]))
    return SampleStats(mean, std, p5, p50, p95, float(v.min()), float(v.max()),
                       mean - half, mean + half, n)
