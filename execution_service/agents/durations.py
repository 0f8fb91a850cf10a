"""Durations as written in agent files: "500ms", "30s", "2m", "1h", "1m30s", or a number of seconds."""

from __future__ import annotations

import math
import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h))+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")

DURATION_HELP = 'a duration such as "500ms", "30s", "2m", "1h", "1m30s", or a number of seconds'


def parse_duration(value: object) -> float:
    """Seconds in `value`. Raises ValueError (naming the accepted forms) for anything else, zero or negative."""
    if isinstance(value, bool):
        raise ValueError(f"expected {DURATION_HELP}, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if _NUMBER.fullmatch(text):
            seconds = float(text)
        elif _WHOLE.fullmatch(text):
            seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(text))
        else:
            raise ValueError(f"expected {DURATION_HELP}, got {value!r}")
    else:
        raise ValueError(f"expected {DURATION_HELP}, got {value!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"must be more than zero, got {value!r}")
    return seconds
