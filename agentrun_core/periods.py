"""Spans of time as people type them: a number and a unit, `90s`, `15m`, `12h`, `7d`, `2w`, `1.5d`.

One parser for every place that reads one (the retention period and its rules, `agentrun runs stats --since`), so they
accept the same text and refuse the same text with the same words. A period is at most MAX_PERIOD: "now minus the
period" must stay a date (a longer one would overflow datetime's range instead of meaning "keep everything").
"""

from __future__ import annotations

import re
from datetime import timedelta

_PERIOD = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_PERIOD_DAYS = 36_500
MAX_PERIOD = timedelta(days=MAX_PERIOD_DAYS)
SHAPE = "a number and a unit (s, m, h, d, w) such as 30d, 12h, 2w"


def parse_period(text: str) -> timedelta:
    """`30d` -> 30 days. ValueError whose message completes "<what> ..." ("must be a number and a unit ...", "must be
    at most 36500d ...") for anything else."""
    match = _PERIOD.match(text)
    if match is None:
        raise ValueError(f"must be {SHAPE}")
    try:
        period = timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    except OverflowError:
        period = None
    if period is None or period > MAX_PERIOD:
        raise ValueError(f"must be at most {MAX_PERIOD_DAYS}d (100 years)")
    return period


def format_period(period: timedelta) -> str:
    """The shortest text parse_period reads back as `period` (whole seconds)."""
    seconds = int(period.total_seconds())
    for unit, size in (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
