"""ListRuns pages and GetRun's descendants stay under the gRPC message cap when runs are large, on SQLite and
PostgreSQL: a page then holds fewer runs than page_size, and paging still lists every run exactly once."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from agentrun.runs.v1 import runs_service_pb2 as rs

from agentrun_core.domain import ModelCall, Run
from agentrun_core.proto_convert import run_to_pb
from tests.runs_service.api.conftest import start_runs_client
from tests.support.composition import child_of, top_level
from tests.support.run_factory import make_run

pytestmark = pytest.mark.timeout(120)

T0 = datetime(2026, 10, 1, 12, tzinfo=UTC)
# The service's messages are capped at 64 KiB here, so runs are cut into responses of at most 32 KiB of runs.
MAX_MESSAGE = 64 * 1024
TASK = "x" * 12_000  # each run ~ 13 KB: 12 of them (~160 KB) overflow one message


def _fat(run: Run) -> Run:
    return dataclasses.replace(run, task=TASK)


async def test_a_page_of_large_runs_is_cut_by_size_and_paging_lists_each_run_once(db_url: str, tmp_path: Path) -> None:
    client = await start_runs_client(db_url, tmp_path, max_message_bytes=MAX_MESSAGE)
    try:
        recorded = [
            _fat(make_run(agent="big", start_time=T0 + timedelta(seconds=i), model_calls=1, tool_calls=0, seed=i))
            for i in range(12)
        ]
        for run in recorded:
            await client.stub.RecordRun(rs.RecordRunRequest(run=run_to_pb(run)))
        request = rs.ListRunsRequest(filter='agent_name = "big"')  # default page_size (50)
        listed: list[str] = []
        pages = 0
        while True:
            # Before: RESOURCE_EXHAUSTED "Sent message larger than max" on the first page.
            page = await client.stub.ListRuns(request)
            pages += 1
            assert page.runs, "every page holds at least one run"
            assert page.ByteSize() <= MAX_MESSAGE
            listed.extend(run.id for run in page.runs)
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
        assert pages > 1
        newest_first = [run.id for run in sorted(recorded, key=lambda r: r.start_time, reverse=True)]
        assert listed == newest_first  # each run exactly once, in order

        # A single run larger than the cut is still sent, alone.
        huge = dataclasses.replace(
            make_run(agent="big", start_time=T0 - timedelta(seconds=1), model_calls=1, tool_calls=0), task="y" * 40_000
        )
        await client.stub.RecordRun(rs.RecordRunRequest(run=run_to_pb(huge)))
        alone = await client.stub.ListRuns(rs.ListRunsRequest(filter='agent_name = "big"', order_by="start_time asc"))
        assert [run.id for run in alone.runs] == [huge.id] and alone.next_page_token
    finally:
        await client.channel.close()
        await client.server.stop(0)


async def test_large_descendants_are_cut_by_size_and_marked_truncated(db_url: str, tmp_path: Path) -> None:
    client = await start_runs_client(db_url, tmp_path, max_message_bytes=MAX_MESSAGE)
    try:
        root = top_level(agent="planner", session_id="big-tree", model_calls=1, tool_calls=0)
        children = [_fat(child_of(root, f"call-{i:03d}", start_offset_s=0.1 * (i + 1), seed=i)) for i in range(8)]
        for run in (root, *children):
            await client.stub.RecordRun(rs.RecordRunRequest(run=run_to_pb(run)))
        got = await client.stub.GetRun(rs.GetRunRequest(run_id=root.id, include_descendants=True))
        assert 1 <= len(got.descendants) < len(children)
        assert got.descendants_truncated
        assert [d.id for d in got.descendants] == [c.id for c in children[: len(got.descendants)]]
    finally:
        await client.channel.close()
        await client.server.stop(0)


MIB = 1024 * 1024


async def test_a_client_with_grpcs_default_receive_limit_reads_every_page(db_url: str, tmp_path: Path) -> None:
    """gRPC clients (grpcio, grpc-js, grpc-go, grpc-java) refuse messages over 4 MiB by default: with the service's
    default settings, pages of runs, of steps, and a run with its descendants all stay under it (the test's channel
    has the default limit)."""
    client = await start_runs_client(db_url, tmp_path)
    try:
        runs = [
            dataclasses.replace(
                make_run(agent="mib", start_time=T0 + timedelta(seconds=i), model_calls=1, tool_calls=0, seed=i),
                task="x" * MIB,
            )
            for i in range(5)
        ]
        for run in runs:
            await client.stub.RecordRun(rs.RecordRunRequest(run=run_to_pb(run)))
        listed: list[str] = []
        request = rs.ListRunsRequest(filter='agent_name = "mib"')
        while True:
            page = await client.stub.ListRuns(request)  # before: RESOURCE_EXHAUSTED (4194320 vs. 4194304)
            listed.extend(run.id for run in page.runs)
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
        assert sorted(listed) == sorted(run.id for run in runs) and len(listed) == len(runs)

        chatty = make_run(agent="steps", model_calls=30, tool_calls=0, seed=7)
        steps = [
            dataclasses.replace(step, payload=dataclasses.replace(step.payload, text="y" * 150_000))
            if isinstance(step.payload, ModelCall)
            else step
            for step in chatty.execution_steps
        ]
        chatty = dataclasses.replace(chatty, execution_steps=tuple(steps))
        await client.stub.RecordRun(rs.RecordRunRequest(run=run_to_pb(chatty)))
        sequences: list[int] = []
        steps_request = rs.ListRunStepsRequest(run_id=chatty.id, page_size=1000)
        while True:
            step_page = await client.stub.ListRunSteps(steps_request)  # before: (4,5xx,xxx vs. 4194304)
            sequences.extend(step.sequence for step in step_page.steps)
            if not step_page.next_page_token:
                break
            steps_request.page_token = step_page.next_page_token
        assert sequences == [step.sequence for step in chatty.execution_steps]

        root = dataclasses.replace(top_level(agent="planner", model_calls=1, tool_calls=0), task="r" * MIB)
        children = [
            dataclasses.replace(child_of(root, f"call-{i}", start_offset_s=0.1 * (i + 1), seed=i), task="c" * 900_000)
            for i in range(4)
        ]
        for run in (root, *children):
            await client.stub.RecordRun(rs.RecordRunRequest(run=run_to_pb(run)))
        tree = await client.stub.GetRun(rs.GetRunRequest(run_id=root.id, include_descendants=True))
        assert tree.run.id == root.id and tree.descendants_truncated and 1 <= len(tree.descendants) < 4
    finally:
        await client.channel.close()
        await client.server.stop(0)
