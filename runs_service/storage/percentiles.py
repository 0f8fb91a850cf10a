"""Percentiles computed like PostgreSQL's percentile_cont (linear interpolation between the closest ranks)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class HistogramBucket:
    """`count` values, all within [low, high]; buckets are given in ascending, non-overlapping order."""

    count: int
    low: float
    high: float

    def value(self, index: int) -> float:
        """The estimate of the bucket's `index`-th (0-based) smallest value: its minimum and maximum are exact, the
        values between them are spread evenly."""
        if index <= 0 or self.count <= 1:
            return float(self.low)
        if index >= self.count - 1:
            return float(self.high)
        return self.low + (self.high - self.low) * index / (self.count - 1)


def histogram_percentile(buckets: Sequence[HistogramBucket], fraction: float) -> float | None:
    """percentile_cont over the values a histogram summarises: exact where the ranks needed fall on a bucket's
    minimum or maximum, otherwise within the bucket's [low, high]."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be within 0..1, got {fraction}")
    total = sum(b.count for b in buckets)
    if total == 0:
        return None
    position = fraction * (total - 1)
    lower = math.floor(position)
    upper = math.ceil(position)
    low_value = _value_at(buckets, lower)
    if lower == upper:
        return low_value
    return low_value + (_value_at(buckets, upper) - low_value) * (position - lower)


def _value_at(buckets: Sequence[HistogramBucket], rank: int) -> float:
    for bucket in buckets:
        if rank < bucket.count:
            return bucket.value(rank)
        rank -= bucket.count
    raise IndexError("rank beyond the histogram")
