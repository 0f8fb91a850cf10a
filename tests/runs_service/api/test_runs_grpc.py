"""RunsService through its generated stubs, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import grpc
import pytest
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentrun_core.domain import RunStatus
from agentrun_core.grpc_status import error_reason
from agentrun_core.ids import new_run_id
from agentrun_core.proto_convert import run_to_pb
from tests.runs_service.api.conftest import RunsClient
from tests.support.run_factory import make_run


async def record(runs: RunsClient, run: run_pb2.Run) -> rs.RecordRunResponse:
    return await runs.stub.RecordRun(rs.RecordRunRequest(run=run))


async def expect_error(call: object, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() == code, caught.value.details()
    return caught.value


async def test_recorded_run_reads_back_unchanged_in_full_view(runs: RunsClient) -> None:
    run = run_to_pb(make_run())
    response = await record(runs, run)
    assert response.outcome == rs.RECORD_OUTCOME_CREATED
    got = await runs.stub.GetRun(rs.GetRunRequest(run_id=run.id, view=rs.RUN_VIEW_FULL))
    assert got.run == run
    assert len(got.run.execution_steps) == len(run.execution_steps) > 0
    basic = await runs.stub.GetRun(rs.GetRunRequest(run_id=run.id))
    assert not basic.run.execution_steps and not basic.run.tool_calls
    assert basic.run.token_usage == run.token_usage


async def test_replay_is_a_no_op_and_running_never_overwrites_terminal(runs: RunsClient) -> None:
    done = make_run(status=RunStatus.COMPLETED)
    running = dataclasses.replace(done.basic(), status=RunStatus.RUNNING, end_time=None, duration=None)
    assert (await record(runs, run_to_pb(running))).outcome == rs.RECORD_OUTCOME_CREATED
    assert (await record(runs, run_to_pb(done))).outcome == rs.RECORD_OUTCOME_UPDATED
    assert (await record(runs, run_to_pb(done))).outcome == rs.RECORD_OUTCOME_UNCHANGED
    late = await record(runs, run_to_pb(running))
    assert late.outcome == rs.RECORD_OUTCOME_IGNORED
    assert late.stored_status == run_pb2.RUN_STATUS_COMPLETED
    got = await runs.stub.GetRun(rs.GetRunRequest(run_id=done.id, view=rs.RUN_VIEW_FULL))
    assert got.run == run_to_pb(done)


async def test_fifty_concurrent_replays_store_one_run_with_one_copy_of_each_step(runs: RunsClient) -> None:
    run = run_to_pb(make_run())
    outcomes = await asyncio.gather(*(record(runs, run) for _ in range(50)))
    assert [o.outcome for o in outcomes].count(rs.RECORD_OUTCOME_CREATED) == 1
    steps: list[run_pb2.ExecutionStep] = []
    token = ""
    while True:
        page = await runs.stub.ListRunSteps(rs.ListRunStepsRequest(run_id=run.id, page_size=7, page_token=token))
        steps.extend(page.steps)
        token = page.next_page_token
        if not token:
            break
    assert [s.sequence for s in steps] == list(range(1, len(run.execution_steps) + 1))
    listed = await runs.stub.ListRuns(rs.ListRunsRequest(filter=f'agent_name = "{run.agent_name}"'))
    assert [r.id for r in listed.runs] == [run.id]


async def test_unknown_run_is_not_found_with_a_reason(runs: RunsClient) -> None:
    error = await expect_error(runs.stub.GetRun(rs.GetRunRequest(run_id=new_run_id())), grpc.StatusCode.NOT_FOUND)
    assert error_reason(error) == "RUN_NOT_FOUND"
    await expect_error(runs.stub.ListRunSteps(rs.ListRunStepsRequest(run_id=new_run_id())), grpc.StatusCode.NOT_FOUND)


@pytest.mark.parametrize(
    "run_id", ["", "not-a-uuid", "0190B6E2-7C3A-7D4E-9F10-2A3B4C5D6E7F", "5d0ee2de-0f6b-4c0e-9d8c-3f1d7a0b1c2d"]
)
async def test_malformed_run_ids_are_invalid_argument(runs: RunsClient, run_id: str) -> None:
    error = await expect_error(runs.stub.GetRun(rs.GetRunRequest(run_id=run_id)), grpc.StatusCode.INVALID_ARGUMENT)
    assert "run_id" in (error.details() or "")
    bad = run_to_pb(make_run())
    bad.id = run_id
    error = await expect_error(record(runs, bad), grpc.StatusCode.INVALID_ARGUMENT)
    assert "run.id" in (error.details() or "") or "id" in (error.details() or "")


async def test_bad_records_are_invalid_argument_naming_the_field(runs: RunsClient) -> None:
    gap = run_to_pb(make_run())
    gap.execution_steps[2].sequence = 9
    error = await expect_error(record(runs, gap), grpc.StatusCode.INVALID_ARGUMENT)
    assert "execution_steps[2]" in (error.details() or "")

    negative = run_to_pb(make_run())
    negative.token_usage.input_tokens = -5
    error = await expect_error(record(runs, negative), grpc.StatusCode.INVALID_ARGUMENT)
    assert "token_usage.input_tokens" in (error.details() or "")

    no_end = run_to_pb(make_run())
    no_end.ClearField("end_time")
    error = await expect_error(record(runs, no_end), grpc.StatusCode.INVALID_ARGUMENT)
    assert "end_time" in (error.details() or "")

    no_status = run_to_pb(make_run())
    no_status.status = run_pb2.RUN_STATUS_UNSPECIFIED
    error = await expect_error(record(runs, no_status), grpc.StatusCode.INVALID_ARGUMENT)
    assert "status" in (error.details() or "")

    # Nothing was stored by any of these.
    listed = await runs.stub.ListRuns(rs.ListRunsRequest())
    assert list(listed.runs) == []


async def test_records_over_the_size_cap_are_invalid_argument(db_url: str, tmp_path) -> None:
    from tests.runs_service.api.conftest import start_runs_client

    client = await start_runs_client(db_url, tmp_path, max_record_bytes=4096)
    try:
        run = run_to_pb(make_run())
        run.final_response = "x" * 5000
        error = await expect_error(record(client, run), grpc.StatusCode.INVALID_ARGUMENT)
        assert "4096" in (error.details() or "")
    finally:
        await client.channel.close()
        await client.server.stop(0)


async def test_list_runs_filters_orders_and_paginates(runs: RunsClient) -> None:
    base = datetime(2026, 3, 1, tzinfo=UTC)
    stored = []
    for i in range(12):
        run = make_run(
            agent="clock" if i % 2 else "reviewer",
            status=RunStatus.COMPLETED if i % 3 else RunStatus.FAILED,
            start_time=base + timedelta(minutes=i),
        )
        stored.append(run)
        await record(runs, run_to_pb(run))
    expected = sorted(
        (r for r in stored if r.agent_name == "clock" and r.status is RunStatus.COMPLETED),
        key=lambda r: r.start_time,
        reverse=True,
    )
    seen: list[str] = []
    token = ""
    query = 'agent_name = "clock" AND status = COMPLETED'
    while True:
        page = await runs.stub.ListRuns(rs.ListRunsRequest(filter=query, page_size=2, page_token=token))
        assert len(page.runs) <= 2
        seen.extend(r.id for r in page.runs)
        token = page.next_page_token
        if not token:
            break
    assert seen == [r.id for r in expected]

    first = await runs.stub.ListRuns(rs.ListRunsRequest(filter=query, page_size=1))
    assert first.next_page_token
    error = await expect_error(
        runs.stub.ListRuns(
            rs.ListRunsRequest(filter='agent_name = "reviewer"', page_size=1, page_token=first.next_page_token)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "page_token" in (error.details() or "")
    await expect_error(runs.stub.ListRuns(rs.ListRunsRequest(page_size=-1)), grpc.StatusCode.INVALID_ARGUMENT)


async def test_list_runs_page_size_zero_means_50_and_over_1000_is_capped_at_1000(runs: RunsClient) -> None:
    base = datetime(2026, 3, 1, tzinfo=UTC)
    # 1,010 small runs (one model call, no tools), stored through the server's own repository: quick to insert.
    batch = asyncio.Semaphore(16)

    async def store(i: int) -> str:
        run = make_run(model_calls=1, tool_calls=0, start_time=base + timedelta(seconds=i))
        async with batch:
            await runs.server.repository.record_run(run)
        return run.id

    stored = set(await asyncio.gather(*(store(i) for i in range(1010))))

    default = await runs.stub.ListRuns(rs.ListRunsRequest(page_size=0))
    assert len(default.runs) == 50 and default.next_page_token
    for size in (1001, 5000, 2**31 - 1):
        capped = await runs.stub.ListRuns(rs.ListRunsRequest(page_size=size))
        assert len(capped.runs) == 1000 and capped.next_page_token, size
    exact = await runs.stub.ListRuns(rs.ListRunsRequest(page_size=1000))
    assert [r.id for r in exact.runs] == [r.id for r in capped.runs]
    # The capped page continues where it stopped: the last 10 runs, then no token.
    rest = await runs.stub.ListRuns(rs.ListRunsRequest(page_size=5000, page_token=capped.next_page_token))
    assert len(rest.runs) == 10 and not rest.next_page_token
    assert {r.id for r in capped.runs} | {r.id for r in rest.runs} == stored


async def test_invalid_filters_name_the_problem_and_its_position(runs: RunsClient) -> None:
    error = await expect_error(
        runs.stub.ListRuns(rs.ListRunsRequest(filter="colour = 3")), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "colour" in (error.details() or "") and "position 0" in (error.details() or "")
    assert error_reason(error) == "INVALID_FILTER"
    error = await expect_error(
        runs.stub.ListRuns(rs.ListRunsRequest(filter="total_tokens > many")), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "position 15" in (error.details() or "")
    await expect_error(runs.stub.ListRuns(rs.ListRunsRequest(order_by="colour desc")), grpc.StatusCode.INVALID_ARGUMENT)


def ts(value: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


async def test_run_and_tool_stats(runs: RunsClient) -> None:
    base = datetime(2026, 4, 1, tzinfo=UTC)
    stored = [
        make_run(agent="clock", status=RunStatus.COMPLETED, start_time=base + timedelta(hours=1)),
        make_run(agent="clock", status=RunStatus.FAILED, start_time=base + timedelta(hours=2)),
        make_run(agent="reviewer", status=RunStatus.COMPLETED, start_time=base + timedelta(hours=3)),
        make_run(agent="clock", status=RunStatus.COMPLETED, start_time=base - timedelta(days=3)),  # outside range
    ]
    for run in stored:
        await record(runs, run_to_pb(run))
    stats = await runs.stub.GetRunStats(
        rs.GetRunStatsRequest(
            start_time=ts(base), end_time=ts(base + timedelta(days=1)), group_by=rs.STATS_GROUP_BY_AGENT
        )
    )
    by_key = {g.key: g for g in stats.groups}
    assert set(by_key) == {"clock", "reviewer"}
    assert by_key["clock"].run_count == 2
    assert by_key["clock"].success_rate == pytest.approx(0.5)
    assert by_key["clock"].token_usage.total_tokens == sum(r.token_usage.total_tokens for r in stored[:2])
    clock_cost = sum(r.cost.amount for r in stored[:2] if r.cost is not None)
    assert Decimal(by_key["clock"].cost.amount) == clock_cost
    assert stored[0].cost is not None
    assert by_key["clock"].cost.price_table_version == stored[0].cost.price_table_version != ""

    tools = await runs.stub.GetToolStats(
        rs.GetToolStatsRequest(start_time=ts(base), end_time=ts(base + timedelta(days=1)))
    )
    expected_calls = sum(len(r.tool_calls) for r in stored[:3])
    assert sum(t.call_count for t in tools.tools) == expected_calls

    error = await expect_error(runs.stub.GetRunStats(rs.GetRunStatsRequest()), grpc.StatusCode.INVALID_ARGUMENT)
    assert "start_time" in (error.details() or "")


async def test_health_is_serving_and_reflection_lists_the_service(runs: RunsClient) -> None:
    health = health_pb2_grpc.HealthStub(runs.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service="agentrun.runs.v1.RunsService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(runs.channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    async for response in responses:
        names = {s.name for s in response.list_services_response.service}
        assert "agentrun.runs.v1.RunsService" in names
        break
    # The stable name too (clients that speak only grpc.reflection.v1): the same messages, field for field.
    v1 = runs.channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    asked = reflection_pb2.ServerReflectionRequest(file_containing_symbol="agentrun.runs.v1.RunsService")
    async for response in v1(iter([asked])):
        assert response.file_descriptor_response.file_descriptor_proto, response
        break


async def test_nul_characters_are_refused_naming_the_field_but_their_escape_text_is_fine(runs: RunsClient) -> None:
    bad = run_to_pb(make_run())
    bad.execution_steps[3].model_call.text = "before\x00after" if bad.execution_steps[3].HasField("model_call") else ""
    bad.labels["team"] = "a\x00b"
    error = await expect_error(record(runs, bad), grpc.StatusCode.INVALID_ARGUMENT)
    assert "NUL" in (error.details() or "") and "run." in (error.details() or "")

    fine = run_to_pb(make_run())
    fine.task = "the six characters \\u0000 are not a NUL"
    assert (await record(runs, fine)).outcome == rs.RECORD_OUTCOME_CREATED
    got = await runs.stub.GetRun(rs.GetRunRequest(run_id=fine.id))
    assert got.run.task == fine.task
