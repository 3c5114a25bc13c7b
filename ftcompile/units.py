"""Durations as people write them: one parser for every time in the product.

Device specs (``pcm:1d``), ``sweep --times`` and ``harden --time-budget`` all read times here, so a unit
means the same everywhere: ``m`` is a minute, as in ``10m``; a month is written ``mo`` (30 days) and never
``m``. Plain numbers are seconds.
"""
from __future__ import annotations

import math
import re

from ftcompile.errors import ConfigError

UNITS = {"s": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0, "mo": 30 * 86400.0,
         "y": 365 * 86400.0}
ACCEPTED = "s, min or m (minutes), h, d, w, mo (30-day months), y (365-day years), or plain seconds"

# a regular expression rather than a duration library: the units are few, and months and years must be the
# fixed 30 and 365 days of the device fits (calendar-aware parsers make them depend on the date)
_NUMBER_AND_UNIT = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([a-z]*)\s*")


def parse_time(text, what: str = "time") -> float:
    """Seconds in ``text``: ``30s``, ``10min`` or ``10m``, ``1h``, ``1d``, ``1w``, ``1mo`` (30 days), ``1y``
    (365 days), or a plain number of seconds (``2.5``); a number passes through.

    ``what`` names the input in the error message (``--time-budget``). Raises ``ConfigError`` for an unknown
    unit, a malformed, negative or non-finite time.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _NUMBER_AND_UNIT.fullmatch(str(text))
        if match is None or (match.group(2) and match.group(2) not in UNITS):
            raise ConfigError(f"{what} {text!r} is malformed; give a number with a unit: {ACCEPTED} "
                              "(e.g. 30s, 10min, 1h, 1d, 1mo, 1y).")
        seconds = float(match.group(1)) * UNITS.get(match.group(2), 1.0)
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{what} {text!r} must be a finite time >= 0 seconds.")
    return seconds


def format_time(seconds: float) -> str:
    """The shortest exact spelling ``parse_time`` reads back: ``1y``, ``1mo``, ``1w``, ``1d``, ``1h``,
    ``10min``, ``30s``; other values as seconds (``2.5s``)."""
    for unit in ("y", "mo", "w", "d", "h", "min", "s"):
        value = seconds / UNITS[unit]
        if value >= 1 and abs(value - round(value)) < 1e-9:
            return f"{round(value)}{unit}"
    return f"{seconds:g}s"
