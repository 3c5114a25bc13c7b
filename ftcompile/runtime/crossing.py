"""Where a model loses half its clean metric under drift: the one rule behind ``sweep``'s crossing, ``harden --sigma
auto`` and the examples' half-loss studies.

Given a curve (axis values ``xs`` ascending, mean metric ``means`` at each) and the clean metric, the crossing is the
first point where the straight line between the last point above half and the first at or below it meets half the
clean metric (on a log axis for times since programming). A curve that never falls to half has no crossing.
"""
from __future__ import annotations

import math
from typing import Sequence


def half_loss_crossing(xs: Sequence[float], means: Sequence[float], clean: float, *, log: bool = False) -> float | None:
    """The interpolated ``x`` where ``means`` first reach ``clean / 2`` (None if they never do).

    Example:
        >>> half_loss_crossing([0, 0.2, 0.4], [0.9, 0.6, 0.3], 0.9)
        0.3
    """
    half = clean / 2
    below = next((i for i, m in enumerate(means) if m <= half), None)
    if below is None:
        return None
    if below == 0:
        return float(xs[0])
    (x0, m0), (x1, m1) = (xs[below - 1], means[below - 1]), (xs[below], means[below])
    share = (m0 - half) / (m0 - m1)
    if log and x0 > 0:
        return float(math.exp(math.log(x0) + share * (math.log(x1) - math.log(x0))))
    return float(x0 + share * (x1 - x0))


def find_half_loss(measure, clean: float, *, start: float = 0.1, stop: float = 3.2, tolerance: float = 0.02):
    """The sigma where ``measure(sigma)`` (a mean metric under drift, falling with sigma) meets half of ``clean``:
    bracketed by doubling from ``start``, narrowed by bisection to ``tolerance``, then ``half_loss_crossing``
    between the last point above half and the first at or below it. Returns ``(sigma, points)`` with every
    ``(sigma, mean)`` measured, or ``(None, points)`` when the metric stays above half up to ``stop``."""
    points = {0.0: clean}
    lo, hi = 0.0, start
    while True:
        points[hi] = measure(hi)
        if points[hi] <= clean / 2:
            break
        if hi >= stop:
            return None, sorted(points.items())
        lo, hi = hi, min(2 * hi, stop)
    while hi - lo > tolerance:
        mid = round((lo + hi) / 2, 6)
        points[mid] = measure(mid)
        lo, hi = (mid, hi) if points[mid] > clean / 2 else (lo, mid)
    xs = [lo, hi]
    return half_loss_crossing(xs, [points[lo], points[hi]], clean), sorted(points.items())
