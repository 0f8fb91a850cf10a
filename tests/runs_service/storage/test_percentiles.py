"""The percentile maths of runs_service.storage.percentiles, against the exact definition (percentile_cont)."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runs_service.storage.percentiles import HistogramBucket, histogram_percentile, percentile_cont
from runs_service.storage.stats import GAMMA


def _histogram(values: list[int]) -> list[HistogramBucket]:
    """The buckets PostgreSQL's stats query builds: floor(ln(max(d, 1)) / ln(GAMMA)), with count, min and max."""
    by_bucket: dict[int, list[int]] = defaultdict(list)
    for value in values:
        by_bucket[math.floor(math.log(max(value, 1)) / math.log(GAMMA))].append(value)
    return [HistogramBucket(len(v), min(v), max(v)) for _, v in sorted(by_bucket.items())]


durations = st.lists(st.integers(min_value=0, max_value=10**10), min_size=1, max_size=400)
fractions = st.sampled_from([0.0, 0.5, 0.9, 0.95, 0.99, 1.0])


@given(durations, fractions)
def test_histogram_percentile_is_within_a_bucket_width(values: list[int], fraction: float) -> None:
    exact = percentile_cont(sorted(values), fraction)
    approx = histogram_percentile(_histogram(values), fraction)
    assert exact is not None and approx is not None
    # A bucket spans a factor GAMMA, except the first, which holds 0 and 1 us together (ln(max(d, 1))): there the
    # error is up to its width, 1 us ([0, 0, 1] at 0.5: exact 0, interpolated 0.5).
    assert abs(approx - exact) <= exact * (GAMMA - 1) + 1 + 1e-6


@given(st.lists(st.integers(min_value=0, max_value=10**10), min_size=1, max_size=60, unique=True), fractions)
def test_histogram_percentile_is_exact_when_no_bucket_holds_more_than_two(values: list[int], fraction: float) -> None:
    buckets = _histogram(values)
    if max(b.count for b in buckets) > 2:
        return
    assert histogram_percentile(buckets, fraction) == pytest.approx(percentile_cont(sorted(values), fraction))


def test_histogram_percentile_edges() -> None:
    assert histogram_percentile([], 0.5) is None
    assert histogram_percentile([HistogramBucket(0, 0, 0)], 0.5) is None
    assert histogram_percentile([HistogramBucket(1, 42, 42)], 0.95) == 42
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        histogram_percentile([HistogramBucket(1, 1, 1)], 1.5)
