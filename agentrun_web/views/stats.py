"""The stats page: its time range (in the URL), and GetRunStats / GetToolStats answers shaped into charts.

Charts are plain HTML and CSS (columns and bars sized with CSS variables), so they need no script and no library:
per day (every day of the range, days without runs at zero) runs, success rate, tokens, cost (one chart per currency,
`cost_scale`) and p50/p95 duration; per agent, model and user the same figures as bars (cost bars in one currency);
per tool calls, success rate and p50/p95.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from agentrun.runs.v1 import runs_service_pb2 as runs_pb2

from agentrun_web.views import format as fmt
from agentrun_web.views.charts import Column, ColumnChart
from agentrun_web.views.cost_scale import CostBar, cost_bars, cost_charts

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


def day_charts(groups: Sequence[runs_pb2.RunStatsGroup], days: Sequence[str]) -> list[ColumnChart]:
    by_day = {group.key: group for group in groups}
    empty = runs_pb2.RunStatsGroup()
    rows = [by_day.get(day, empty) for day in days]
    labels = [day[5:] for day in days]  # MM-DD
    charts = [
        _chart("runs", labels, [float(g.run_count) for g in rows], lambda v: fmt.count(int(v))),
        _chart("success rate", labels, [g.success_rate if g.run_count else 0.0 for g in rows], fmt.percent, top=1.0),
        _chart("tokens", labels, [float(fmt.total_tokens(g.token_usage)) for g in rows], lambda v: fmt.count(int(v))),
    ]
    charts.extend(cost_charts(rows, labels))
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
    # The cost bar (None: the cost is shown as text only, with `cost_bar.note` saying why).
    cost_bar: CostBar
    p50: str
    p95: str
    p95_share: float


@dataclass(frozen=True, slots=True)
class GroupTable:
    rows: list[GroupRow]
    # The one currency whose costs are drawn as bars ("" when no group has a cost).
    bar_currency: str


def group_rows(groups: Sequence[runs_pb2.RunStatsGroup]) -> GroupTable:
    ordered = sorted(groups, key=lambda group: (-group.run_count, group.key))
    bar_currency, bars = cost_bars(ordered)
    most_runs = max([g.run_count for g in ordered] + [0])
    most_tokens = max([fmt.total_tokens(g.token_usage) for g in ordered] + [0])
    slowest = max([_ms(g, "duration_p95") or 0.0 for g in ordered] + [0.0])

    def share(value: float, peak: float) -> float:
        return value / peak if peak > 0 else 0.0

    rows = [
        GroupRow(
            key=group.key or fmt.NONE,
            runs=group.run_count,
            runs_share=share(group.run_count, most_runs),
            success=fmt.percent(group.success_rate),
            success_share=group.success_rate,
            tokens=fmt.total_tokens(group.token_usage),
            tokens_share=share(fmt.total_tokens(group.token_usage), most_tokens),
            cost=fmt.group_cost(group),
            cost_bar=bar,
            p50=fmt.optional_duration(group, "duration_p50"),
            p95=fmt.optional_duration(group, "duration_p95"),
            p95_share=share(_ms(group, "duration_p95") or 0.0, slowest),
        )
        for group, bar in zip(ordered, bars, strict=True)
    ]
    return GroupTable(rows, bar_currency)


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
