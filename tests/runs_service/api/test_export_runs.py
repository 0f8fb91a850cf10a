"""ExportRuns through the real server on SQLite and PostgreSQL: keyset order, resumable cursors, scope, bounded
messages and flow control."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs
from agentrun.runs.v1 import runs_service_pb2_grpc as rs_grpc

from agentrun_core.domain import Run
from agentrun_core.grpc_status import error_reason
from agentrun_core.proto_convert import run_to_pb
from tests.runs_service.api.conftest import RunsClient, start_runs_client
from tests.runs_service.api.test_delete_runs import record_all
from tests.support.auth import ALICE, BOB, SERVICE, bearer_interceptors, token_auth
from tests.support.run_factory import make_run

T0 = datetime(2026, 9, 1, tzinfo=UTC)


def fleet(count: int = 45) -> list[Run]:
    # Several runs share a start time, so the order's tie-breaker (the id) matters.
    return [
        make_run(
            agent=f"agent-{i % 3}",
            user="alice" if i % 2 else "bob",
            start_time=T0 + timedelta(minutes=i // 3),
            model_calls=2 + i % 3,
            tool_calls=1 + i % 2,
            seed=i,
        )
        for i in range(count)
    ]


def in_export_order(runs: list[Run]) -> list[run_pb2.Run]:
    return [run_to_pb(r) for r in sorted(runs, key=lambda r: (r.start_time, r.id))]


def basic(run: run_pb2.Run) -> run_pb2.Run:
    copy = run_pb2.Run()
    copy.CopyFrom(run)
    copy.ClearField("execution_steps")
    copy.ClearField("tool_calls")
    return copy


async def export(stub: rs_grpc.RunsServiceStub, **fields: Any) -> list[rs.ExportRunsResponse]:
    return [message async for message in stub.ExportRuns(rs.ExportRunsRequest(**fields))]


async def test_export_streams_every_run_in_keyset_order_and_resumes_from_any_message(runs: RunsClient) -> None:
    everything = fleet()
    await record_all(runs.stub, everything)
    messages = await export(runs.stub, view=rs.RUN_VIEW_FULL)
    assert len(messages) == 3  # 20 FULL runs per batch
    exported = [run for message in messages for run in message.runs]
    assert exported == in_export_order(everything)
    for index, message in enumerate(messages):
        assert message.resume_cursor
        rest = await export(runs.stub, view=rs.RUN_VIEW_FULL, resume_cursor=message.resume_cursor)
        done = sum(len(m.runs) for m in messages[: index + 1])
        assert [run for m in rest for run in m.runs] == exported[done:]  # no duplicate, no gap

    basic_messages = await export(runs.stub)
    assert [run for m in basic_messages for run in m.runs] == [basic(r) for r in exported]


async def test_filter_count_and_cursors_bound_to_the_filter(runs: RunsClient) -> None:
    everything = fleet()
    await record_all(runs.stub, everything)
    flt = 'agent_name = "agent-1" AND tool = "get_current_time" OR agent_name = "agent-2"'
    listed = await runs.stub.ListRuns(rs.ListRunsRequest(filter=flt, page_size=1000, order_by="start_time asc"))
    messages = await export(runs.stub, filter=flt, count_total=True)
    exported = [run for m in messages for run in m.runs]
    assert {r.id for r in exported} == {r.id for r in listed.runs} and len(exported) == len(listed.runs) > 0
    assert messages[0].total_count == len(exported)

    # Nothing matches: the count asked for still comes (0), in one message without runs; without it, no message.
    (empty,) = await export(runs.stub, filter='agent_name = "nobody"', count_total=True)
    assert (empty.total_count, list(empty.runs), empty.resume_cursor) == (0, [], "")
    assert await export(runs.stub, filter='agent_name = "nobody"') == []
    last = messages[-1].resume_cursor  # resumed after the last run: nothing left, and the cursor stays usable
    (after_last,) = await export(runs.stub, filter=flt, count_total=True, resume_cursor=last)
    assert (after_last.total_count, after_last.resume_cursor) == (0, last)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await export(runs.stub, filter='agent_name = "agent-1"', resume_cursor=messages[0].resume_cursor)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(caught.value) == "INVALID_PAGE_TOKEN"
    assert caught.value.details() == (
        "resume_cursor: belongs to a request with a different filter or caller; it is only valid with the request it "
        "came from: start again without it"
    )
    for bad in ("nonsense", messages[0].resume_cursor[:-3] + "AAA", "x" * 3000):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await export(runs.stub, filter=flt, resume_cursor=bad)
        assert error_reason(caught.value) == "INVALID_PAGE_TOKEN"
        details = caught.value.details() or ""
        # It names its field once, and never calls itself a page token.
        assert details.startswith("resume_cursor: ") and details.count("resume_cursor") == 1, details
        assert "page" not in details, details
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await export(runs.stub, filter="agent = 1")
    assert error_reason(caught.value) == "INVALID_FILTER"
    assert await export(runs.stub, filter='agent_name = "nobody"') == []


async def test_users_export_their_own_runs_and_cursors_are_theirs(db_url: str, tmp_path: Path) -> None:
    client = await start_runs_client(db_url, tmp_path, auth=token_auth(tmp_path / "tokens.jsonl"))
    channels = {
        token: grpc.aio.insecure_channel(client.address, interceptors=bearer_interceptors(f"Bearer {token}"))
        for token in (ALICE, BOB, SERVICE)
    }
    try:
        stubs = {token: rs_grpc.RunsServiceStub(channel) for token, channel in channels.items()}
        everything = fleet()
        await record_all(stubs[SERVICE], everything)
        mine = await export(stubs[ALICE], count_total=True)
        alices = [basic(r) for r in in_export_order([r for r in everything if r.user == "alice"])]
        assert [run for m in mine for run in m.runs] == alices
        assert mine[0].total_count == len(alices)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await export(stubs[BOB], resume_cursor=mine[0].resume_cursor)
        assert error_reason(caught.value) == "INVALID_PAGE_TOKEN"
    finally:
        for channel in channels.values():
            await channel.close()
        await client.channel.close()
        await client.server.stop(0)


async def test_messages_stay_under_the_cap_and_resume_inside_a_batch(db_url: str, tmp_path: Path) -> None:
    client = await start_runs_client(db_url, tmp_path, max_message_bytes=64 * 1024)
    try:
        everything = [make_run(start_time=T0 + timedelta(seconds=i % 4), seed=i) for i in range(20)]  # ~7 KB each
        for i in range(0, 20, 5):
            await record_all(client.stub, everything[i : i + 5])
        messages = await export(client.stub, view=rs.RUN_VIEW_FULL)
        assert len(messages) > 2  # one batch of 20 FULL runs, cut into messages of at most 32 KiB
        assert all(m.ByteSize() <= 32 * 1024 + 100 for m in messages)
        middle = messages[1]
        rest = await export(client.stub, view=rs.RUN_VIEW_FULL, resume_cursor=middle.resume_cursor)
        done = len(messages[0].runs) + len(middle.runs)
        assert [run for m in rest for run in m.runs] == in_export_order(everything)[done:]
    finally:
        await client.channel.close()
        await client.server.stop(0)


async def test_a_slow_reader_holds_the_export_back(runs: RunsClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """gRPC flow control reaches the database reads: the server does not read ahead of a client that waits."""
    fat = [dataclasses.replace(make_run(model_calls=1, tool_calls=0, seed=i), task="x" * 100_000) for i in range(300)]
    for i in range(0, len(fat), 40):
        await record_all(runs.stub, fat[i : i + 40])
    repository = runs.server.repository
    produced = [0]
    original = repository.export

    async def counting(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async for batch in original(*args, **kwargs):
            produced[0] += 1
            yield batch

    monkeypatch.setattr(repository, "export", counting)
    call = runs.stub.ExportRuns(rs.ExportRunsRequest(view=rs.RUN_VIEW_FULL))
    first = await call.read()
    assert isinstance(first, rs.ExportRunsResponse) and len(first.runs) == 20
    await asyncio.sleep(1.0)
    assert produced[0] <= 6, produced[0]  # of 15 batches (2 MB each): only what fits in the transport's windows
    count = len(first.runs)
    while (message := await call.read()) is not grpc.aio.EOF:
        assert isinstance(message, rs.ExportRunsResponse)
        count += len(message.runs)
    assert count == 300 and produced[0] == 15
