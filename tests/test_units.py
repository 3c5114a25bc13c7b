"""The one time parser: every unit, the same meaning in device specs, sweep --times and --time-budget."""
import pytest

from ftcompile.errors import ConfigError
from ftcompile.units import format_time, parse_time

DAY = 86400.0


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("10min", 600), ("10m", 600), ("1h", 3600), ("1d", DAY),
                                          ("1w", 7 * DAY), ("1mo", 30 * DAY), ("2mo", 60 * DAY), ("1y", 365 * DAY),
                                          ("2.5", 2.5), (" 1.5 h ", 5400), ("1e3s", 1000), (".5d", DAY / 2), (7, 7.0)])
def test_each_unit(text, seconds):
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["1x", "1M", "1 month", "soon", "", "1d2h", "-1s", "inf"])
def test_errors_name_the_accepted_units(text):
    with pytest.raises(ConfigError) as err:
        parse_time(text, what="--time-budget")
    msg = str(err.value)
    assert msg.startswith(f"--time-budget {text!r}")
    if text == "-1s":  # well formed, out of range
        assert "must be a finite time >= 0 seconds" in msg
    else:
        assert "min or m (minutes)" in msg and "mo (30-day months)" in msg


def test_format_time_reads_back_and_spells_months_mo():
    assert [format_time(s) for s in (1, 60, 600, 3600, DAY, 7 * DAY, 30 * DAY, 365 * DAY, 2.5)] == \
        ["1s", "1min", "10min", "1h", "1d", "1w", "1mo", "1y", "2.5s"]
    for s in (1, 90, 600, 3600, 2 * DAY, 30 * DAY, 60 * DAY, 365 * DAY, 2.5):
        assert parse_time(format_time(s)) == s


def test_every_entry_point_reads_m_as_minutes():
    from ftcompile.api import parse_times
    from ftcompile.cli import _duration
    from ftcompile.runtime.drift import parse_drift

    assert _duration("10m") == _duration("10min") == 600 and _duration(None) is None
    assert parse_times("1s,10m,1mo") == [1.0, 600.0, 30 * DAY]
    assert parse_drift("pcm:10m").t == 600 and parse_drift("reram-wan2022:1s").t == 1
    assert parse_drift("pcm:1mo,comp=global").spec() == "pcm:1mo,comp=global"
    with pytest.raises(ConfigError, match="--time-budget '10 minutes'"):
        _duration("10 minutes")
    with pytest.raises(ConfigError, match="pcm time '1month'.*mo \\(30-day months\\)"):
        parse_drift("pcm:1month")
