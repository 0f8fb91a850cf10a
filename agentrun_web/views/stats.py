"""The stats page: its time range (in the URL), and GetRunStats / GetToolStats answers shaped into charts.

Charts are plain HTML and CSS (columns and bars sized with CSS variables), so they need no script and no library:
per day (every day of the range, days without runs at zero) runs, success rate, tokens, cost and p50/p95 duration;
per agent, model and user the same figures as bars; per tool calls, success rate and p50/p95.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation

from agentrun.runs.v1 import runs_service_pb2 as runs_pb2

from agentrun_web.views import format as fmt

RANGES: tuple[tuple[str, str, timedelta], ...] = (
    ("24h", "last 24 hours", timedelta(hours=24)),
    ("7d", "last 7 days", timedelta(days=7)),
    ("30d", "last 30 days", timedelta(days=30)),
    ("90d", "last 90 days", timedelta(days=90)),
)
DEFAULT_RANGE = "30d"
# The range menu's entry for whole days (from/to); the menu shows it whenever the days are given.
CUSTOM_RANGE = "custom"
MAX_DAYS = 366


class RangeError(ValueError):
    """The time range in the URL cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class TimeRange:
    key: str  # one of RANGES, or "custom"
    start: datetime
    end: datetime
    start_date: str
    end_date: str

    @property
    def label(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M}Z → {self.end:%Y-%m-%d %H:%M}Z"

    def days(self) -> list[str]:
        first, last = self.start.date(), (self.end - timedelta(microseconds=1)).date()
        return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def _parse_date(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise RangeError(f"{name} must be a date such as 2026-11-01, got {value!r}") from None


def time_range(params: Mapping[str, str], now: datetime | None = None) -> TimeRange:
    """From ?range=24h|7d|30d|90d, or ?from=YYYY-MM-DD&to=YYYY-MM-DD (whole UTC days, `to` included)."""
    current = now or datetime.now(UTC)
    start_text, end_text = params.get("from", "").strip(), params.get("to", "").strip()
    if start_text or end_text:
        first = _parse_date(start_text, "from") if start_text else None
        last = _parse_date(end_text, "to") if end_text else current.date()
        if first is None:
            raise RangeError("a custom range needs its first day (from)")
        if last < first:
            raise RangeError("the last day (to) must not be before the first (from)")
        if (last - first).days >= MAX_DAYS:
            raise RangeError(f"a range is at most {MAX_DAYS} days")
        start = datetime(first.year, first.month, first.day, tzinfo=UTC)
        end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
        return TimeRange(CUSTOM_RANGE, start, end, first.isoformat(), last.isoformat())
    key = params.get("range", "").strip() or DEFAULT_RANGE
    if key == CUSTOM_RANGE:
        raise RangeError("a custom range needs its first day (from)")
    span = next((span for name, _, span in RANGES if name == key), None)
    if span is None:
        raise RangeError(f"unknown range {key!r}; one of {', '.join(name for name, _, _ in RANGES)}")
    start = current - span
    return TimeRange(key, start, current, start.date().isoformat(), current.date().isoformat())


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


def _cost(group: runs_pb2.RunStatsGroup) -> float:
    if not group.HasField("cost") or not group.cost.amount:
        return 0.0
    try:
        return float(Decimal(group.cost.amount))
    except InvalidOperation:
        return 0.0


def _ms(group: object, name: str) -> float | None:
    return fmt.seconds(getattr(group, name)) if group.HasField(name) else None  # type: ignore[attr-defined]


def _chart(
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    text: Callable[[float], str],
    *,
    top: float | None = None,
) -> ColumnChart:
    peak = top if top is not None else max([*values, 0.0])
    columns = [
        Column(label, value / peak if peak > 0 else 0.0, f"{label}: {text(value)}", value=text(value))
        for label, value in zip(labels, values, strict=True)
    ]
    return ColumnChart(title, columns, text(peak) if peak > 0 else "none")


def _money(value: float) -> str:
    return f"{value:.4f} USD" if value < 100 else f"{value:,.0f} USD"


def day_charts(groups: Sequence[runs_pb2.RunStatsGroup], days: Sequence[str]) -> list[ColumnChart]:
    by_day = {group.key: group for group in groups}
    empty = runs_pb2.RunStatsGroup()
    rows = [by_day.get(day, empty) for day in days]
    labels = [day[5:] for day in days]  # MM-DD
    charts = [
        _chart("runs", labels, [float(g.run_count) for g in rows], lambda v: fmt.count(int(v))),
        _chart("success rate", labels, [g.success_rate if g.run_count else 0.0 for g in rows], fmt.percent, top=1.0),
        _chart("tokens", labels, [float(fmt.total_tokens(g.token_usage)) for g in rows], lambda v: fmt.count(int(v))),
        _chart("cost", labels, [_cost(g) for g in rows], _money),
    ]
    p50 = [_ms(g, "duration_p50") or 0.0 for g in rows]
    p95 = [_ms(g, "duration_p95") or 0.0 for g in rows]
    peak = max([*p95, *p50, 0.0])
    columns = [
        Column(
            label,
            a / peak if peak else 0.0,
            f"{label}: p50 {fmt.human_seconds(a)}",
            b / peak if peak else 0.0,
            f"{label}: p95 {fmt.human_seconds(b)}",
            value=fmt.human_seconds(a),
            value2=fmt.human_seconds(b),
        )
        for label, a, b in zip(labels, p50, p95, strict=True)
    ]
    charts.append(ColumnChart("duration p50 / p95", columns, fmt.human_seconds(peak), legend=("p50", "p95")))
    return charts


@dataclass(frozen=True, slots=True)
class GroupRow:
    key: str
    runs: int
    runs_share: float
    success: str
    success_share: float
    tokens: int
    tokens_share: float
    cost: str
    cost_share: float
    p50: str
    p95: str
    p95_share: float


def group_rows(groups: Sequence[runs_pb2.RunStatsGroup]) -> list[GroupRow]:
    ordered = sorted(groups, key=lambda group: (-group.run_count, group.key))
    most_runs = max([g.run_count for g in ordered] + [0])
    most_tokens = max([fmt.total_tokens(g.token_usage) for g in ordered] + [0])
    most_cost = max([_cost(g) for g in ordered] + [0.0])
    slowest = max([_ms(g, "duration_p95") or 0.0 for g in ordered] + [0.0])

    def share(value: float, peak: float) -> float:
        return value / peak if peak > 0 else 0.0

    return [
        GroupRow(
            key=group.key or fmt.NONE,
            runs=group.run_count,
            runs_share=share(group.run_count, most_runs),
            success=fmt.percent(group.success_rate),
            success_share=group.success_rate,
            tokens=fmt.total_tokens(group.token_usage),
            tokens_share=share(fmt.total_tokens(group.token_usage), most_tokens),
            cost=fmt.group_cost(group),
            cost_share=share(_cost(group), most_cost),
            p50=fmt.optional_duration(group, "duration_p50"),
            p95=fmt.optional_duration(group, "duration_p95"),
            p95_share=share(_ms(group, "duration_p95") or 0.0, slowest),
        )
        for group in ordered
    ]


@dataclass(frozen=True, slots=True)
class ToolRow:
    tool: str
    server: str
    calls: int
    calls_share: float
    success: str
    success_share: float
    p50: str
    p95: str
    p95_share: float


def tool_rows(tools: Sequence[runs_pb2.ToolStats]) -> list[ToolRow]:
    ordered = sorted(tools, key=lambda tool: (-tool.call_count, tool.tool_name))
    most_calls = max([t.call_count for t in ordered] + [0])
    slowest = max([_ms(t, "duration_p95") or 0.0 for t in ordered] + [0.0])
    return [
        ToolRow(
            tool=tool.tool_name,
            server=tool.server,
            calls=tool.call_count,
            calls_share=tool.call_count / most_calls if most_calls else 0.0,
            success=fmt.percent(1.0 - tool.error_rate) if tool.call_count else fmt.NONE,
            success_share=1.0 - tool.error_rate if tool.call_count else 0.0,
            p50=fmt.optional_duration(tool, "duration_p50"),
            p95=fmt.optional_duration(tool, "duration_p95"),
            p95_share=(_ms(tool, "duration_p95") or 0.0) / slowest if slowest else 0.0,
        )
        for tool in ordered
    ]
