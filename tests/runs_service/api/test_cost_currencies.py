"""GetRunStats and ListSessions never add costs in different currencies: per currency sums, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from agentrun.runs.v1 import runs_service_pb2 as rs

from agentrun_cli.render import format as fmt
from agentrun_core.domain import Cost, Run
from agentrun_core.proto_convert import run_to_pb
from tests.runs_service.api.conftest import RunsClient
from tests.support.run_factory import make_run

pytestmark = pytest.mark.timeout(120)

T0 = datetime(2026, 10, 1, 12, tzinfo=UTC)


def _priced(agent: str, session: str, amount: str, currency: str, offset_s: int) -> Run:
    run = make_run(agent=agent, start_time=T0 + timedelta(seconds=offset_s), model_calls=1, tool_calls=0)
    cost = Cost(Decimal(amount), currency_code=currency, price_table_version="prices 1")
    return dataclasses.replace(run, cost=cost, session_id=session)


def _stats_request(group_by: int = rs.STATS_GROUP_BY_AGENT) -> rs.GetRunStatsRequest:
    request = rs.GetRunStatsRequest(group_by=group_by)  # type: ignore[arg-type]
    request.start_time.FromDatetime(T0 - timedelta(hours=1))
    request.end_time.FromDatetime(T0 + timedelta(hours=1))
    return request


def _per_currency(costs: object) -> list[tuple[str, Decimal]]:
    return [(c.currency_code, Decimal(c.amount)) for c in costs]  # type: ignore[attr-defined]


async def test_costs_in_two_currencies_are_summed_per_currency_never_together(runs: RunsClient) -> None:
    recorded = [
        _priced("mixed", "s-mixed", "1.00", "USD", 0),
        _priced("mixed", "s-mixed", "1.00", "EUR", 1),
        _priced("mixed", "s-mixed", "0.50", "USD", 2),
        _priced("plain", "s-plain", "0.25", "USD", 3),
        _priced("plain", "s-plain", "0.50", "USD", 4),
    ]
    for run in recorded:
        await runs.stub.RecordRun(rs.RecordRunRequest(run=run_to_pb(run)))

    groups = {g.key: g for g in (await runs.stub.GetRunStats(_stats_request())).groups}
    mixed, plain = groups["mixed"], groups["plain"]
    # Before: cost 2.50 "EUR" (1.00 USD + 1.00 EUR + 0.50 USD added up under the lowest currency code).
    assert not mixed.HasField("cost")
    assert _per_currency(mixed.cost_by_currency) == [("EUR", Decimal("1")), ("USD", Decimal("1.5"))]
    assert all(c.price_table_version == "prices 1" for c in mixed.cost_by_currency)
    # A single-currency group is as before: one cost, and the same single entry per currency.
    assert (Decimal(plain.cost.amount), plain.cost.currency_code) == (Decimal("0.75"), "USD")
    assert _per_currency(plain.cost_by_currency) == [("USD", Decimal("0.75"))]
    assert fmt.group_cost(mixed) == "1 EUR + 1.5 USD"
    assert fmt.group_cost(plain) == "0.75 USD"

    by_session = {g.key: g for g in (await runs.stub.GetRunStats(_stats_request(rs.STATS_GROUP_BY_SESSION))).groups}
    assert not by_session["s-mixed"].HasField("cost")
    assert _per_currency(by_session["s-mixed"].cost_by_currency) == [("EUR", Decimal("1")), ("USD", Decimal("1.5"))]

    sessions = {s.id: s for s in (await runs.stub.ListSessions(rs.ListSessionsRequest())).sessions}
    assert not sessions["s-mixed"].HasField("cost")
    assert _per_currency(sessions["s-mixed"].cost_by_currency) == [("EUR", Decimal("1")), ("USD", Decimal("1.5"))]
    assert (Decimal(sessions["s-plain"].cost.amount), sessions["s-plain"].cost.currency_code) == (
        Decimal("0.75"),
        "USD",
    )
    assert _per_currency(sessions["s-plain"].cost_by_currency) == [("USD", Decimal("0.75"))]
    assert fmt.group_cost(sessions["s-mixed"]) == "1 EUR + 1.5 USD"


async def test_a_group_without_priced_runs_has_no_cost_in_any_currency(runs: RunsClient) -> None:
    run = dataclasses.replace(make_run(agent="free", start_time=T0, model_calls=1, tool_calls=0), cost=None)
    await runs.stub.RecordRun(rs.RecordRunRequest(run=run_to_pb(run)))
    (group,) = (await runs.stub.GetRunStats(_stats_request())).groups
    assert not group.HasField("cost") and not group.cost_by_currency
    assert fmt.group_cost(group) == fmt.NONE
