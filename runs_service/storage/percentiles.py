"""Percentiles computed like PostgreSQL's percentile_cont (linear interpolation between the closest ranks)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta


def percentile_cont(sorted_values: Sequence[float], fraction: float) -> float | None:
    """The `fraction` (0..1) percentile of ascending `sorted_values`, or None when there are none."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be within 0..1, got {fraction}")
    count = len(sorted_values)
    if count == 0:
        return None
    position = fraction * (count - 1)
    lower = math.floor(position)
    upper = math.ceil(position)
    low_value = float(sorted_values[lower])
    if lower == upper:
        return low_value
    return low_value + (float(sorted_values[upper]) - low_value) * (position - lower)


def micros_to_duration(value: float | None) -> timedelta | None:
    """A percentile of microsecond durations as a timedelta, rounded to the microsecond."""
    return None if value is None else timedelta(microseconds=round(value))
