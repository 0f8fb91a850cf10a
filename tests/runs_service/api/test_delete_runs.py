"""DeleteRuns through the real server on SQLite and PostgreSQL: filters, dry runs, scope, and exact stats after."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs
from agentrun.runs.v1 import runs_service_pb2_grpc as rs_grpc
from google.protobuf import timestamp_pb2

from agentrun_core.domain import Run, RunStatus
from agentrun_core.grpc_status import error_reason
from agentrun_core.proto_convert import run_to_pb
from runs_service.storage.tables import run_steps, runs, tool_calls
from tests.runs_service.api.conftest import RunsClient, start_runs_client
from tests.support.auth import ADMIN, ALICE, BOB, SERVICE, bearer_interceptors, token_auth
from tests.support.run_factory import make_run

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def _ts(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


async def record_all(stub: rs_grpc.RunsServiceStub, runs_: list[Run]) -> None:
    reply = await stub.RecordRuns(rs.RecordRunsRequest(requests=[rs.RecordRunRequest(run=run_to_pb(r)) for r in runs_]))
    assert all(r.outcome == rs.RECORD_OUTCOME_CREATED for r in reply.results), reply


async def stats(stub: rs_grpc.RunsServiceStub) -> tuple[list[rs.RunStatsGroup], list[rs.ToolStats]]:
    start, end = _ts(T0 - timedelta(days=1)), _ts(T0 + timedelta(days=30))
    by_agent = await stub.GetRunStats(rs.GetRunStatsRequest(start_time=start, end_time=end))
    tools = await stub.GetToolStats(rs.GetToolStatsRequest(start_time=start, end_time=end))
    return list(by_agent.groups), list(tools.tools)


async def stored_ids(stub: rs_grpc.RunsServiceStub) -> set[str]:
    found: set[str] = set()
    token = ""
    while True:
        page = await stub.ListRuns(rs.ListRunsRequest(page_size=1000, page_token=token))
        found |= {r.id for r in page.runs}
        token = page.next_page_token
        if not token:
            return found


async def child_rows(client: RunsClient, run_ids: list[str]) -> int:
    async with client.server.engine.connect() as conn:
        total = 0
        for table in (run_steps, tool_calls):
            stmt = sa.select(sa.func.count()).select_from(table).where(table.c.run_id.in_(run_ids))
            total += int((await conn.execute(stmt)).scalar_one())
        stmt = sa.select(sa.func.count()).select_from(runs).where(runs.c.id.in_(run_ids))
        return total + int((await conn.execute(stmt)).scalar_one())


def fleet() -> tuple[list[Run], list[Run]]:
    """(runs to keep, runs to delete): two agents, two users, spread over days, with steps and tool calls."""
    keep: list[Run] = []
    drop: list[Run] = []
    for i in range(12):
        run = make_run(
            agent="keep-agent" if i % 3 else "drop-agent",
            user="alice" if i % 2 else "bob",
            status=[RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.TIMED_OUT][i % 3],
            start_time=T0 + timedelta(days=i, minutes=i),
            model_calls=3 + i % 4,
            tool_calls=2 + i % 3,
            seed=i,
        )
        (drop if run.agent_name == "drop-agent" else keep).append(run)
    return keep, drop


async def test_stats_of_what_remains_are_exact(runs: RunsClient) -> None:
    keep, drop = fleet()
    await record_all(runs.stub, keep)
    expected = await stats(runs.stub)  # what the kept runs alone give
    await record_all(runs.stub, drop)
    assert await stats(runs.stub) != expected

    dry = await runs.stub.DeleteRuns(rs.DeleteRunsRequest(filter='agent_name = "drop-agent"', dry_run=True))
    assert dry.run_count == len(drop)
    assert list(dry.sample_run_ids) == [r.id for r in sorted(drop, key=lambda r: r.start_time)]
    assert await stored_ids(runs.stub) == {r.id for r in keep + drop}  # a dry run deletes nothing

    reply = await runs.stub.DeleteRuns(rs.DeleteRunsRequest(filter='agent_name = "drop-agent"'))
    assert reply.run_count == len(drop) and not reply.sample_run_ids
    assert await stats(runs.stub) == expected
    assert await stored_ids(runs.stub) == {r.id for r in keep}
    assert await child_rows(runs, [r.id for r in drop]) == 0  # steps and tool calls went with them
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await runs.stub.ListRunSteps(rs.ListRunStepsRequest(run_id=drop[0].id))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    # Deleting again finds nothing.
    assert (await runs.stub.DeleteRuns(rs.DeleteRunsRequest(filter='agent_name = "drop-agent"'))).run_count == 0


async def test_an_empty_filter_never_deletes_everything(runs: RunsClient) -> None:
    keep, drop = fleet()
    await record_all(runs.stub, keep + drop)
    for request, field in (
        (rs.DeleteRunsRequest(), "filter"),
        (rs.DeleteRunsRequest(filter="   "), "filter"),
        (rs.DeleteRunsRequest(dry_run=True), "filter"),
        (rs.DeleteRunsRequest(filter="status = FAILED", match_all=True), "match_all"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await runs.stub.DeleteRuns(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (caught.value.details() or "").startswith(f"{field}:"), caught.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await runs.stub.DeleteRuns(rs.DeleteRunsRequest(filter="agent = x"))
    assert error_reason(caught.value) == "INVALID_FILTER"
    assert len(await stored_ids(runs.stub)) == len(keep + drop)

    reply = await runs.stub.DeleteRuns(rs.DeleteRunsRequest(match_all=True))
    assert reply.run_count == len(keep + drop)
    assert await stored_ids(runs.stub) == set()


async def test_unfinished_runs_are_kept_and_counted_unless_asked_for(runs: RunsClient) -> None:
    live = make_run(status=RunStatus.RUNNING, agent="x")
    queued = make_run(status=RunStatus.QUEUED, agent="x")
    done = make_run(agent="x")
    await record_all(runs.stub, [live, queued, done])
    dry = await runs.stub.DeleteRuns(rs.DeleteRunsRequest(filter='agent_name = "x"', dry_run=True))
    assert (dry.run_count, list(dry.sample_run_ids), dry.unfinished_count) == (1, [done.id], 2)
    deleted = await runs.stub.DeleteRuns(rs.DeleteRunsRequest(match_all=True))
    assert (deleted.run_count, deleted.unfinished_count) == (1, 2)
    assert await stored_ids(runs.stub) == {live.id, queued.id}

    # A RUNNING record whose run will never finish (its machine and outbox were lost) goes when asked.
    stale = rs.DeleteRunsRequest(filter=f'id = "{live.id}"', include_unfinished=True)
    dry_stale = rs.DeleteRunsRequest(filter=f'id = "{live.id}"', include_unfinished=True, dry_run=True)
    assert (await runs.stub.DeleteRuns(dry_stale)).run_count == 1
    assert (await runs.stub.DeleteRuns(stale)).run_count == 1
    assert await stored_ids(runs.stub) == {queued.id}


async def test_a_large_delete_goes_in_batches_and_counts_every_run(runs: RunsClient) -> None:
    small = [
        make_run(model_calls=1, tool_calls=0, start_time=T0 + timedelta(seconds=i % 7), seed=i) for i in range(1_234)
    ]
    for i in range(0, len(small), 500):
        await record_all(runs.stub, small[i : i + 500])
    reply = await runs.stub.DeleteRuns(rs.DeleteRunsRequest(filter='agent_name = "agent-a"'))
    assert reply.run_count == 1_234  # more than two batches of 500, runs sharing start times across batches
    assert await stored_ids(runs.stub) == set()


@pytest.fixture
async def secure(db_url: str, tmp_path: Path) -> AsyncIterator[tuple[RunsClient, dict[str, rs_grpc.RunsServiceStub]]]:
    client = await start_runs_client(db_url, tmp_path, auth=token_auth(tmp_path / "tokens.jsonl"))
    channels = {
        name: grpc.aio.insecure_channel(client.address, interceptors=bearer_interceptors(f"Bearer {token}"))
        for name, token in (("admin", ADMIN), ("alice", ALICE), ("bob", BOB), ("service", SERVICE))
    }
    try:
        yield client, {name: rs_grpc.RunsServiceStub(channel) for name, channel in channels.items()}
    finally:
        for channel in channels.values():
            await channel.close()
        await client.channel.close()
        await client.server.stop(0)


async def test_users_erase_only_their_own_runs_and_admins_any(
    secure: tuple[RunsClient, dict[str, rs_grpc.RunsServiceStub]],
) -> None:
    _client, stubs = secure
    keep, drop = fleet()
    everything = keep + drop
    await record_all(stubs["service"], everything)
    alices = {r.id for r in everything if r.user == "alice"}
    bobs = {r.id for r in everything if r.user == "bob"}

    # A user's filter only ever reaches that user's runs, whatever it names.
    dry = await stubs["alice"].DeleteRuns(rs.DeleteRunsRequest(filter='user = "bob"', dry_run=True))
    assert dry.run_count == 0
    dry = await stubs["alice"].DeleteRuns(rs.DeleteRunsRequest(match_all=True, dry_run=True))
    assert dry.run_count == len(alices) and set(dry.sample_run_ids) <= alices
    assert (await stubs["alice"].DeleteRuns(rs.DeleteRunsRequest(match_all=True))).run_count == len(alices)
    assert await stored_ids(stubs["admin"]) == bobs
    assert await stored_ids(stubs["alice"]) == set()

    # The execution service's token records runs; it may not delete them.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs["service"].DeleteRuns(rs.DeleteRunsRequest(match_all=True, dry_run=True))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED

    bob_drop = [r.id for r in drop if r.user == "bob"]
    reply = await stubs["admin"].DeleteRuns(rs.DeleteRunsRequest(filter='user = "bob" AND agent_name = "drop-agent"'))
    assert reply.run_count == len(bob_drop)
    assert await stored_ids(stubs["bob"]) == bobs - set(bob_drop)


async def test_a_run_recorded_again_after_deletion_is_stored_again(runs: RunsClient) -> None:
    """At-least-once delivery may resend a deleted run's record: it is stored as new (documented)."""
    run = make_run()
    await record_all(runs.stub, [run])
    assert (await runs.stub.DeleteRuns(rs.DeleteRunsRequest(filter=f'user = "{run.user}"'))).run_count == 1
    reply = await runs.stub.RecordRun(rs.RecordRunRequest(run=run_to_pb(run)))
    assert reply.outcome == rs.RECORD_OUTCOME_CREATED
    got = await runs.stub.GetRun(rs.GetRunRequest(run_id=run.id, view=rs.RUN_VIEW_FULL))
    assert got.run == run_to_pb(run) and got.run.status == run_pb2.RUN_STATUS_COMPLETED


async def test_sessions_follow_deleted_runs(runs: RunsClient) -> None:
    """The sessions table (kept by triggers on runs) drops a session whose runs are all deleted and keeps the rest."""
    chat = [
        dataclasses.replace(make_run(agent="chat", start_time=T0 + timedelta(minutes=i), seed=i), session_id="chat-1")
        for i in range(3)
    ]
    other = [dataclasses.replace(make_run(agent="other", seed=9), session_id="chat-2")]
    await record_all(runs.stub, chat + other)
    listed = await runs.stub.ListSessions(rs.ListSessionsRequest())
    assert sorted((s.id, s.run_count) for s in listed.sessions) == [("chat-1", 3), ("chat-2", 1)]

    assert (await runs.stub.DeleteRuns(rs.DeleteRunsRequest(filter='agent_name = "other"'))).run_count == 1
    first = await runs.stub.DeleteRuns(rs.DeleteRunsRequest(filter=f'start_time < "{_iso(chat[1].start_time)}"'))
    assert first.run_count == 1
    listed = await runs.stub.ListSessions(rs.ListSessionsRequest())
    assert [(s.id, s.run_count) for s in listed.sessions] == [("chat-1", 2)]
    assert listed.sessions[0].start_time.ToDatetime(UTC) == chat[1].start_time


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


async def test_concurrent_deletes_with_overlapping_filters_delete_every_match_and_count_exactly(
    runs: RunsClient,
) -> None:
    """Two DeleteRuns at once whose filters share runs: neither stops early because the other took some of its
    batch, and the two counts add up to exactly the runs that went (each run counted by the call that deleted it)."""
    for round_ in range(3):
        fleet_ = [
            make_run(
                agent="agent-a" if i % 2 else "agent-b",
                user="alice" if i % 3 else "bob",
                model_calls=1,
                tool_calls=0,
                start_time=T0 + timedelta(seconds=i // 3),
                seed=i,
            )
            for i in range(1_800)
        ]
        for i in range(0, len(fleet_), 600):
            await record_all(runs.stub, fleet_[i : i + 600])
        by_agent = {r.id for r in fleet_ if r.agent_name == "agent-a"}
        by_user = {r.id for r in fleet_ if r.user == "alice"}
        assert len(by_agent & by_user) > 500  # more than a batch shared between the two calls

        first, second = await asyncio.gather(
            runs.stub.DeleteRuns(rs.DeleteRunsRequest(filter='agent_name = "agent-a"')),
            runs.stub.DeleteRuns(rs.DeleteRunsRequest(filter='user = "alice"')),
        )
        remaining = await stored_ids(runs.stub)
        assert remaining == {r.id for r in fleet_} - by_agent - by_user, f"round {round_}"
        assert first.run_count + second.run_count == len(by_agent | by_user), f"round {round_}"
        assert first.run_count <= len(by_agent) and second.run_count <= len(by_user)
        await runs.stub.DeleteRuns(rs.DeleteRunsRequest(match_all=True))
