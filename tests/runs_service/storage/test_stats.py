from __future__ import annotations

import dataclasses
import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from agentrun_core.domain import Cost, ModelCall, Run, RunStatus, TokenUsage
from runs_service.errors import InvalidArgument
from runs_service.queries import GroupBy, RunStatsRow, Scope, StatsQuery
from runs_service.storage.repository import RunRepository
from runs_service.storage.stats import GAMMA
from tests.support.run_factory import make_run

EVERYONE = Scope.everything()
DAY1 = datetime(2026, 2, 1, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
START, END = DAY1, DAY1 + timedelta(days=2)


def _run(
    agent: str,
    status: RunStatus,
    start: datetime,
    duration_s: float | None,
    cost: str | None,
    user: str,
    tokens: int,
    model: str = "gemini-2.5-flash",
    prices: str = "genai-prices 0.2.3",
    context: float = 0.0,
) -> Run:
    base = make_run(agent=agent, status=status, start_time=start, user=user, model=model, seed=tokens)
    # The run's largest context share is its first model call's (RunsService computes it from the steps).
    first = base.execution_steps[0]
    assert isinstance(first.payload, ModelCall)
    steps = (
        dataclasses.replace(first, payload=dataclasses.replace(first.payload, context_window_used=context)),
        *base.execution_steps[1:],
    )
    return dataclasses.replace(
        base,
        execution_steps=steps,
        duration=None if duration_s is None else timedelta(seconds=duration_s),
        end_time=None if duration_s is None and not status.is_terminal else start + timedelta(seconds=duration_s or 0),
        cost=None if cost is None else Cost(Decimal(cost), price_table_version=prices),
        token_usage=TokenUsage(tokens, tokens // 2, tokens * 2, 1, 2, 3),
        max_context_window_used=context,
    )


@pytest.fixture
async def stats_runs(repo: RunRepository) -> list[Run]:
    runs = [
        _run("a", RunStatus.COMPLETED, DAY1 + timedelta(hours=1), 1, "0.1", "alice", 100, context=0.25),
        _run("a", RunStatus.FAILED, DAY1 + timedelta(hours=2), 3, "0.2", "bob", 200, context=0.875),
        _run("a", RunStatus.RUNNING, DAY2 + timedelta(hours=1), None, None, "alice", 300),
        _run(
            "a",
            RunStatus.COMPLETED,
            DAY2 + timedelta(hours=2),
            10,
            "0.05",
            "alice",
            400,
            model="gemini-2.5-pro",
            prices="genai-prices 0.2.4",
        ),
        _run("b", RunStatus.COMPLETED, DAY1 + timedelta(hours=3), 2, None, "bob", 500),
        # Outside [START, END): not counted.
        _run("a", RunStatus.COMPLETED, END, 7, "9", "alice", 600, context=0.99),
        _run("a", RunStatus.COMPLETED, START - timedelta(microseconds=1), 7, "9", "alice", 700),
    ]
    for run in runs:
        await repo.record_run(run)
    return runs


def _by_key(rows: list[RunStatsRow]) -> dict[str, RunStatsRow]:
    return {row.key: row for row in rows}


async def test_stats_by_agent(repo: RunRepository, stats_runs: list[Run]) -> None:
    rows = await repo.run_stats(StatsQuery(START, END, GroupBy.AGENT), EVERYONE)
    assert [r.key for r in rows] == ["a", "b"]
    a, b = rows
    assert (a.run_count, a.completed_count) == (4, 2)
    assert a.success_rate == pytest.approx(2 / 3)
    assert a.token_usage == TokenUsage(1000, 500, 2000, 4, 8, 12)
    assert a.cost_total == Decimal("0.35") and a.cost_currency == "USD"
    assert a.price_table_version == "genai-prices 0.2.3 .. genai-prices 0.2.4"  # its runs were priced with two
    assert a.duration_p50 == timedelta(seconds=3)
    assert a.duration_p95 == timedelta(seconds=9.3)  # 3 + 0.9 * (10 - 3)
    assert (b.run_count, b.completed_count, b.success_rate) == (1, 1, 1.0)
    assert b.cost_total is None and b.price_table_version == ""  # no run of b has a cost: unknown, not 0
    assert b.duration_p50 == b.duration_p95 == timedelta(seconds=2)
    # The closest any run of the group came to its model's input limit (0.99 is outside the range).
    assert (a.max_context_window_used, b.max_context_window_used) == (0.875, 0.0)


async def test_stats_by_day_status_user_model(repo: RunRepository, stats_runs: list[Run]) -> None:
    days = _by_key(await repo.run_stats(StatsQuery(START, END, GroupBy.DAY), EVERYONE))
    assert set(days) == {"2026-02-01", "2026-02-02"}
    first, second = days["2026-02-01"], days["2026-02-02"]
    assert (first.run_count, first.completed_count) == (3, 2)
    assert first.duration_p50 == timedelta(seconds=2)
    assert first.duration_p95 == timedelta(seconds=2.9)
    assert (second.run_count, second.completed_count, second.success_rate) == (2, 1, 1.0)
    assert second.duration_p50 == second.duration_p95 == timedelta(seconds=10)

    statuses = _by_key(await repo.run_stats(StatsQuery(START, END, GroupBy.STATUS), EVERYONE))
    assert {k: v.run_count for k, v in statuses.items()} == {"COMPLETED": 3, "FAILED": 1, "RUNNING": 1}
    assert statuses["RUNNING"].success_rate == 0.0 and statuses["RUNNING"].duration_p50 is None
    assert statuses["FAILED"].success_rate == 0.0

    users = _by_key(await repo.run_stats(StatsQuery(START, END, GroupBy.USER), EVERYONE))
    assert {k: v.run_count for k, v in users.items()} == {"alice": 3, "bob": 2}
    assert {k: v.max_context_window_used for k, v in users.items()} == {"alice": 0.25, "bob": 0.875}
    models = _by_key(await repo.run_stats(StatsQuery(START, END, GroupBy.MODEL), EVERYONE))
    assert {k: v.run_count for k, v in models.items()} == {"gemini-2.5-flash": 4, "gemini-2.5-pro": 1}


async def test_stats_scope_and_filter(repo: RunRepository, stats_runs: list[Run]) -> None:
    alice = await repo.run_stats(StatsQuery(START, END, GroupBy.AGENT), Scope(user="alice"))
    assert [(r.key, r.run_count) for r in alice] == [("a", 3)]
    assert alice[0].cost_total == Decimal("0.15")
    assert alice[0].price_table_version == "genai-prices 0.2.3 .. genai-prices 0.2.4"
    assert await repo.run_stats(StatsQuery(START, END, GroupBy.AGENT), Scope(user="mallory")) == []
    filtered = await repo.run_stats(StatsQuery(START, END, GroupBy.AGENT, filter="status = COMPLETED"), EVERYONE)
    assert [(r.key, r.run_count, r.success_rate) for r in filtered] == [("a", 2, 1.0), ("b", 1, 1.0)]


async def test_stats_range_must_be_ordered(repo: RunRepository) -> None:
    with pytest.raises(InvalidArgument) as info:
        await repo.run_stats(StatsQuery(END, START), EVERYONE)
    assert info.value.field == "end_time"


def _expected_percentile(values: list[int], fraction: float) -> timedelta:
    ordered = sorted(values)
    if len(ordered) == 1:
        return timedelta(microseconds=ordered[0])
    cuts = statistics.quantiles(ordered, n=100 if fraction == 0.95 else 2, method="inclusive")
    return timedelta(microseconds=round(cuts[94] if fraction == 0.95 else cuts[0]))


async def test_tool_stats(repo: RunRepository) -> None:
    runs = [
        make_run(start_time=DAY1 + timedelta(minutes=i), user="alice" if i % 2 else "bob", seed=i) for i in range(4)
    ]
    outside = make_run(start_time=END + timedelta(minutes=1), seed=99)
    for run in [*runs, outside]:
        await repo.record_run(run)

    def expected(selected: list[Run]) -> dict[tuple[str, str], tuple[int, int, timedelta, timedelta]]:
        calls: dict[tuple[str, str], list[tuple[int, bool]]] = defaultdict(list)
        for run in selected:
            for call in run.tool_calls:
                calls[(call.name, call.server)].append((call.duration // timedelta(microseconds=1), call.is_error))
        return {
            key: (
                len(v),
                sum(e for _, e in v),
                _expected_percentile([d for d, _ in v], 0.5),
                _expected_percentile([d for d, _ in v], 0.95),
            )
            for key, v in calls.items()
        }

    def close(a: timedelta | None, b: timedelta) -> bool:
        return a is not None and abs(a - b) <= timedelta(microseconds=1)

    for scope, selected in [(EVERYONE, runs), (Scope(user="alice"), [r for r in runs if r.user == "alice"])]:
        rows = await repo.tool_stats(START, END, "", scope)
        want = expected(selected)
        assert [(r.tool_name, r.server) for r in rows] == sorted(want)
        for row in rows:
            count, errors, p50, p95 = want[(row.tool_name, row.server)]
            assert (row.call_count, row.error_count) == (count, errors)
            assert row.error_rate == pytest.approx(errors / count)
            assert close(row.duration_p50, p50) and close(row.duration_p95, p95), row

    # A filter on the runs that names a tool keeps every tool call of the matching runs.
    with_git = [r for r in runs if "git_status" in r.tools_used]
    rows = await repo.tool_stats(START, END, 'tool = "git_status"', EVERYONE)
    assert {(r.tool_name, r.server): r.call_count for r in rows} == {k: v[0] for k, v in expected(with_git).items()}


async def test_percentiles_of_a_dense_group_are_within_one_percent(repo: RunRepository) -> None:
    """300 runs whose durations crowd into the same 1% buckets: SQLite answers percentile_cont exactly, PostgreSQL
    from its log histogram, within the documented 1%."""
    durations_us = [1_000_000 + 137 * i for i in range(300)]  # 1.000 s .. 1.041 s: ~5 buckets of ~60 runs
    for i, micros in enumerate(durations_us):
        base = make_run(agent="dense", start_time=DAY1 + timedelta(seconds=i), model_calls=1, tool_calls=0, seed=i)
        await repo.record_run(
            dataclasses.replace(
                base, duration=timedelta(microseconds=micros), end_time=base.start_time + timedelta(microseconds=micros)
            )
        )
    (row,) = await repo.run_stats(StatsQuery(START, END, GroupBy.AGENT), EVERYONE)
    assert row.run_count == 300
    for got, fraction in ((row.duration_p50, 0.5), (row.duration_p95, 0.95)):
        exact = _expected_percentile(durations_us, fraction)
        assert got is not None
        assert abs(got - exact) <= exact * (GAMMA - 1), (fraction, got, exact)
        if repo.engine.dialect.name == "sqlite":
            assert abs(got - exact) <= timedelta(microseconds=1)
