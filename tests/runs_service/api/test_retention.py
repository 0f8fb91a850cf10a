"""The retention purge in a real RunsService (SQLite and PostgreSQL): what each rule deletes, what wins when rules
overlap, RUNNING runs kept, stats of the rest exact."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from agentrun.runs.v1 import runs_service_pb2 as rs

from agentrun_core.domain import Run, RunStatus
from agentrun_core.proto_convert import run_to_pb
from runs_service.retention import parse_period, parse_rules
from tests.runs_service.api.conftest import RunsClient, start_runs_client
from tests.runs_service.api.test_delete_runs import record_all, stored_ids
from tests.support.run_factory import make_run

RULES = "agent:short=7d; agent:sho*=14d; agent:keep-*=forever; label:env=dev=1d; label:legal_hold=true=forever; "
RULES += "label:tier=gold*=90d"
NOW = datetime.now(UTC)


def aged(name: str, days: float, agent: str, labels: dict[str, str] | None = None, **kw: object) -> tuple[str, Run]:
    run = make_run(
        agent=agent,
        labels=labels or {},
        start_time=NOW - timedelta(days=days),
        model_calls=3,
        tool_calls=2,
        **kw,  # type: ignore[arg-type]
    )
    return name, run


def fleet() -> tuple[dict[str, Run], set[str]]:
    """The runs, and the names of those the policy (default 30d + RULES) expires."""
    cases = [
        aged("plain-old", 40, "plain"),  # default 30d: expired
        aged("plain-new", 20, "plain"),
        aged("plain-running-old", 100, "plain", status=RunStatus.RUNNING),  # RUNNING never expires
        aged("short-old", 20, "short"),  # short=7d and sho*=14d: the longer (14d) applies: expired
        aged("short-mid", 10, "short"),  # 10 days: kept by sho*=14d although short=7d has expired it
        aged("short-new", 3, "short"),
        aged("keep-ancient", 400, "keep-x"),  # keep-*=forever
        aged("keep-dev", 2, "keep-x", {"env": "dev"}),  # a label rule (1d) beats the agent's forever: expired
        aged("held", 100, "short", {"env": "dev", "legal_hold": "true"}),  # label rules: forever beats 1d
        aged("gold-50", 50, "short", {"tier": "gold-plus"}),  # label 90d beats agent 14d: kept
        aged("gold-100", 100, "short", {"tier": "gold"}),  # past 90d: expired
        aged("tier-silver", 20, "short", {"tier": "silver"}),  # label rule does not match: agent rules: expired
    ]
    expired = {"plain-old", "short-old", "keep-dev", "gold-100", "tier-silver"}
    return dict(cases), expired


async def wait_until(condition: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if await condition():  # type: ignore[operator]
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_the_purge_deletes_exactly_the_expired_runs(db_url: str, tmp_path: Path) -> None:
    client = await start_runs_client(
        db_url,
        tmp_path,
        retention_period=parse_period("30d"),
        retention_rules=parse_rules(RULES),
        retention_interval_s=1,
        retention_batch_size=2,
        retention_pause_s=0,
    )
    try:
        runs, expired = fleet()
        await record_all(client.stub, list(runs.values()))
        kept = {run.id for name, run in runs.items() if name not in expired}

        async def only_kept_remain() -> bool:
            # The purger counts a plan's deletions once all its batches committed: a reader may see them first.
            purger = client.server.purger
            counted = purger is not None and purger.deleted_total >= len(expired)
            return counted and await stored_ids(client.stub) == kept

        await wait_until(only_kept_remain)
        assert client.server.purger is not None
        deleted_before = client.server.purger.deleted_total
        assert deleted_before == len(expired)
        figures = client.server.purger.batch_figures()  # what bench/runs_store.py prints
        assert figures["runs"] == len(expired) and figures["batch_size"] == 2
        assert figures["batches"] >= len(expired) / 2 and 0 < figures["mean_batch_ms"] <= figures["longest_batch_ms"]
        passes = client.server.purger.passes
        await wait_until(lambda: _later(client, passes + 2))
        assert await stored_ids(client.stub) == kept  # nothing more goes on later passes
        assert client.server.purger.deleted_total == deleted_before

        # What remains reads back whole, and the stats count exactly it.
        for name, run in runs.items():
            if name not in expired:
                got = await client.stub.GetRun(rs.GetRunRequest(run_id=run.id, view=rs.RUN_VIEW_FULL))
                assert got.run == run_to_pb(run), name
        start, end = run_to_pb(runs["keep-ancient"]).start_time, run_to_pb(make_run()).start_time
        end.seconds += 3600
        stats = await client.stub.GetRunStats(rs.GetRunStatsRequest(start_time=start, end_time=end))
        assert sum(g.run_count for g in stats.groups) == len(kept)
        tools = await client.stub.GetToolStats(rs.GetToolStatsRequest(start_time=start, end_time=end))
        assert sum(t.call_count for t in tools.tools) == sum(len(r.tool_calls) for r in runs.values() if r.id in kept)
    finally:
        await client.channel.close()
        await client.server.stop(0)


async def _later(client: RunsClient, passes: int) -> bool:
    assert client.server.purger is not None
    return client.server.purger.passes >= passes


async def test_without_retention_nothing_is_purged(runs: RunsClient) -> None:
    assert runs.server.purger is None
    old = make_run(start_time=NOW - timedelta(days=3650))
    await record_all(runs.stub, [old])
    assert await stored_ids(runs.stub) == {old.id}


async def test_a_rule_that_is_not_a_valid_filter_stops_the_start(db_url: str, tmp_path: Path) -> None:
    from agentrun_core.settings import SettingsError

    rules = parse_rules("agent:a\x01b=7d")  # filters refuse control characters
    with pytest.raises(SettingsError) as caught:
        await start_runs_client(db_url, tmp_path, retention_rules=rules)
    assert "AGENTRUN_RETENTION_RULES" in str(caught.value)
