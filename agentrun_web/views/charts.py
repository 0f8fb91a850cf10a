"""Column charts of the stats page: one column per day, heights 0..1 of the chart, and what each column says."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Column:
    label: str
    # 0..1 of the chart's height.
    height: float
    text: str
    # A second series drawn beside it (p95 next to p50), or None.
    height2: float | None = None
    text2: str = ""
    # The values as text, for the chart's data table (value2: the second series').
    value: str = ""
    value2: str = ""


# At most this many day labels under a chart (evenly spaced, the first and the last always among them).
MAX_AXIS_LABELS = 7


@dataclass(frozen=True, slots=True)
class AxisTick:
    # Where the label sits: the middle of its column, 0..1 of the chart's width.
    at: float
    label: str


@dataclass(frozen=True, slots=True)
class ColumnChart:
    title: str
    columns: list[Column]
    top: str  # the value at the top of the axis
    legend: tuple[str, ...] = ()

    @property
    def ticks(self) -> list[AxisTick]:
        """Day labels at a whole number of days apart (1, 2, 7, 14... as the range needs), from the first day."""
        n = len(self.columns)
        if not n:
            return []
        step = next((s for s in (1, 2, 7, 14, 30, 61, 91) if (n - 1) // s + 1 <= MAX_AXIS_LABELS), n)
        return [AxisTick((i + 0.5) / n, self.columns[i].label) for i in range(0, n, step)]

    @property
    def summary(self) -> str:
        """What the chart shows, in words (its aria-label; the table under it has every value)."""
        if not self.columns:
            return f"{self.title}: no days in this range"
        first, last = self.columns[0].label, self.columns[-1].label
        series = f" ({' and '.join(self.legend)})" if self.legend else ""
        return f"{self.title}{series} per day from {first} to {last}; the highest is {self.top}; values in the table"
