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
