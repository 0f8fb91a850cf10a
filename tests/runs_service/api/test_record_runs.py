"""RecordRuns through the real server on SQLite and PostgreSQL: per-run outcomes, the same rules as RecordRun."""

from __future__ import annotations

import asyncio
import dataclasses
import random

import grpc
import pytest
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs

from agentrun_core.domain import RunStatus
from agentrun_core.proto_convert import run_to_pb
from tests.runs_service.api.conftest import RunsClient, start_runs_client
from tests.support.run_factory import make_run


def batch(*runs: run_pb2.Run) -> rs.RecordRunsRequest:
    return rs.RecordRunsRequest(requests=[rs.RecordRunRequest(run=r) for r in runs])


def outcomes(response: rs.RecordRunsResponse) -> list[str]:
    return [rs.RecordOutcome.Name(r.outcome).removeprefix("RECORD_OUTCOME_") for r in response.results]


async def full(runs: RunsClient, run_id: str) -> run_pb2.Run:
    return (await runs.stub.GetRun(rs.GetRunRequest(run_id=run_id, view=rs.RUN_VIEW_FULL))).run


async def test_every_outcome_in_one_batch_and_one_bad_run_fails_no_other(runs: RunsClient) -> None:
    stored_running = make_run(status=RunStatus.COMPLETED)
    running = dataclasses.replace(stored_running.basic(), status=RunStatus.RUNNING, end_time=None, duration=None)
    stored_done = make_run()
    await runs.stub.RecordRun(rs.RecordRunRequest(run=run_to_pb(running)))
    await runs.stub.RecordRun(rs.RecordRunRequest(run=run_to_pb(stored_done)))

    new = run_to_pb(make_run())
    bad_sequence = run_to_pb(make_run())
    bad_sequence.execution_steps[3].sequence = 9
    no_status = run_to_pb(make_run())
    no_status.status = run_pb2.RUN_STATUS_UNSPECIFIED
    late_running = dataclasses.replace(stored_done.basic(), status=RunStatus.RUNNING, end_time=None, duration=None)
    request = batch(
        new,
        bad_sequence,
        run_to_pb(stored_running),  # RUNNING stored -> terminal: UPDATED
        run_to_pb(stored_done),  # the same record again: UNCHANGED
        run_to_pb(late_running),  # RUNNING after terminal: IGNORED
        no_status,
    )
    request.requests.add()  # no run at all
    response = await runs.stub.RecordRuns(request)

    assert outcomes(response) == [
        "CREATED",
        "REJECTED",
        "UPDATED",
        "UNCHANGED",
        "IGNORED",
        "REJECTED",
        "REJECTED",
    ]
    assert [r.run_id for r in response.results] == [r.run.id for r in request.requests]
    rejected = [r.rejection for r in response.results if r.outcome == rs.RECORD_OUTCOME_REJECTED]
    assert [(j.reason, j.field) for j in rejected] == [
        ("INVALID_ARGUMENT", "run.execution_steps[3].sequence"),
        ("INVALID_ARGUMENT", "run.status"),
        ("INVALID_ARGUMENT", "run"),
    ]
    assert "expected 4, got 9" in rejected[0].message
    assert response.results[0].stored_status == run_pb2.RUN_STATUS_COMPLETED
    assert response.results[4].stored_status == run_pb2.RUN_STATUS_COMPLETED
    assert not response.results[0].HasField("rejection")

    # What was accepted reads back exactly as sent; the rejected runs were not stored at all.
    assert await full(runs, new.id) == new
    assert await full(runs, stored_running.id) == run_to_pb(stored_running)
    assert await full(runs, stored_done.id) == run_to_pb(stored_done)
    for missing in (bad_sequence.id, no_status.id):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await full(runs, missing)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_rejections_name_the_same_field_as_record_run(runs: RunsClient) -> None:
    cases = []
    negative = run_to_pb(make_run())
    negative.execution_steps[0].model_call.usage.output_tokens = -2
    cases.append(negative)
    dup = run_to_pb(make_run())
    dup.tool_calls.append(dup.tool_calls[0])
    cases.append(dup)
    foreign_step = run_to_pb(make_run())
    foreign_step.execution_steps[2].run_id = make_run().id
    cases.append(foreign_step)
    nul = run_to_pb(make_run())
    nul.task = "a\x00b"
    cases.append(nul)
    bad_cost = run_to_pb(make_run())
    bad_cost.cost.amount = "12 dollars"
    cases.append(bad_cost)
    far = run_to_pb(make_run())
    far.end_time.seconds = 400_000_000_000
    cases.append(far)
    response = await runs.stub.RecordRuns(batch(*cases))
    for run, result in zip(cases, response.results, strict=True):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await runs.stub.RecordRun(rs.RecordRunRequest(run=run))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert result.outcome == rs.RECORD_OUTCOME_REJECTED
        assert caught.value.details() == result.rejection.message, (result.rejection, caught.value.details())
        assert result.rejection.message.startswith(result.rejection.field + ":"), result.rejection


async def test_times_out_of_the_protobuf_range_are_invalid_argument_naming_the_field(runs: RunsClient) -> None:
    cases: list[tuple[run_pb2.Run, str, str]] = []
    run = run_to_pb(make_run())
    run.start_time.nanos = 1_500_000_000
    cases.append((run, "run.start_time", "nanos must be 0 to 999999999, got 1500000000"))
    run = run_to_pb(make_run())
    run.end_time.nanos = -1
    cases.append((run, "run.end_time", "nanos must be 0 to 999999999, got -1"))
    run = run_to_pb(make_run())
    run.end_time.seconds = 253_402_300_800  # the first second of year 10000
    cases.append((run, "run.end_time", "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z"))
    run = run_to_pb(make_run())
    run.execution_steps[2].time.nanos = 2_000_000_000
    cases.append((run, "run.execution_steps[2].time", "nanos must be 0 to 999999999"))
    run = run_to_pb(make_run())
    run.execution_steps[1].time.seconds = -(10**13)
    cases.append((run, "run.execution_steps[1].time", "must be between 0001-01-01T00:00:00Z"))
    run = run_to_pb(make_run())
    run.tool_calls[0].start_time.nanos = 10**9
    cases.append((run, "run.tool_calls[0].start_time", "nanos must be 0 to 999999999"))
    run = run_to_pb(make_run())
    run.duration.nanos = 1_000_000_000
    cases.append((run, "run.duration", "nanos must be -999999999 to 999999999"))
    response = await runs.stub.RecordRuns(batch(*(run for run, _, _ in cases)))
    for (run, field, words), result in zip(cases, response.results, strict=True):
        assert result.outcome == rs.RECORD_OUTCOME_REJECTED, (field, result)
        assert (result.rejection.field, result.rejection.reason) == (field, "INVALID_ARGUMENT")
        assert words in result.rejection.message, result.rejection
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await runs.stub.RecordRun(rs.RecordRunRequest(run=run))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() == f"{field}: {result.rejection.message.split(': ', 1)[1]}"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await runs.stub.GetRun(rs.GetRunRequest(run_id=run.id))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # nothing was stored


async def test_stats_time_ranges_out_of_range_name_the_field(runs: RunsClient) -> None:
    request = rs.GetRunStatsRequest()
    request.start_time.seconds = 0
    request.end_time.seconds = 1_800_000_000
    request.end_time.nanos = 1_000_000_000
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await runs.stub.GetRunStats(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "end_time: nanos must be 0 to 999999999, got 1000000000"


async def test_a_run_over_the_size_cap_is_rejected_alone(db_url: str, tmp_path: object) -> None:
    client = await start_runs_client(db_url, tmp_path, max_record_bytes=4_000)  # type: ignore[arg-type]
    try:
        small = run_to_pb(make_run(model_calls=2, tool_calls=1))
        big = run_to_pb(make_run())
        assert big.ByteSize() > 4_000 > small.ByteSize()
        response = await client.stub.RecordRuns(batch(big, small))
        assert outcomes(response) == ["REJECTED", "CREATED"]
        assert response.results[0].rejection.field == "run"
        assert "AGENTRUN_MAX_RECORD_BYTES" in response.results[0].rejection.message
    finally:
        await client.channel.close()
        await client.server.stop(0)


async def test_both_rpcs_agree_on_what_is_the_same_record(runs: RunsClient) -> None:
    one, two = run_to_pb(make_run()), run_to_pb(make_run())
    await runs.stub.RecordRun(rs.RecordRunRequest(run=one))
    assert outcomes(await runs.stub.RecordRuns(batch(one, two))) == ["UNCHANGED", "CREATED"]
    reply = await runs.stub.RecordRun(rs.RecordRunRequest(run=two))
    assert reply.outcome == rs.RECORD_OUTCOME_UNCHANGED


async def test_a_run_sent_twice_in_one_batch_is_recorded_in_order(runs: RunsClient) -> None:
    done = make_run()
    running = dataclasses.replace(done.basic(), status=RunStatus.RUNNING, end_time=None, duration=None)
    response = await runs.stub.RecordRuns(batch(run_to_pb(running), run_to_pb(done), run_to_pb(running)))
    assert outcomes(response) == ["CREATED", "UPDATED", "IGNORED"]
    assert await full(runs, done.id) == run_to_pb(done)


async def test_more_than_1000_runs_is_invalid_argument(runs: RunsClient) -> None:
    one = run_to_pb(make_run(model_calls=1, tool_calls=0))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await runs.stub.RecordRuns(rs.RecordRunsRequest(requests=[rs.RecordRunRequest(run=one)] * 1001))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "requests" in (caught.value.details() or "")
    assert outcomes(await runs.stub.RecordRuns(rs.RecordRunsRequest())) == []


async def test_concurrent_overlapping_batches_store_each_run_once(runs: RunsClient) -> None:
    """Batches sharing runs, in different orders, neither deadlock nor duplicate a step."""
    pool = [run_to_pb(make_run(model_calls=3, tool_calls=2)) for _ in range(30)]
    rng = random.Random(3)
    batches = [rng.sample(pool, 20) for _ in range(8)]
    responses = await asyncio.gather(*(runs.stub.RecordRuns(batch(*b)) for b in batches))
    created = [r.run_id for response in responses for r in response.results if r.outcome == rs.RECORD_OUTCOME_CREATED]
    sent = {r.id for b in batches for r in b}
    assert sorted(created) == sorted(sent)  # each run created exactly once, the others UNCHANGED
    for response in responses:
        assert set(outcomes(response)) <= {"CREATED", "UNCHANGED"}
    for run in pool:
        if run.id in sent:
            assert await full(runs, run.id) == run


async def test_both_rpcs_store_the_same_run_with_its_largest_context_share_computed_from_its_steps(
    runs: RunsClient,
) -> None:
    """A client's max_context_window_used is not taken on trust: both RPCs store the largest share of the run's model
    calls, so GetRun FULL of one run recorded through each is the same."""
    template = run_to_pb(make_run())
    model_calls = [step for step in template.execution_steps if step.WhichOneof("payload") == "model_call"]
    for share, step in zip((0.125, 0.375, 0.25), model_calls, strict=False):
        step.model_call.input_token_limit = 1_048_576
        step.model_call.context_window_used = share
    template.max_context_window_used = 0.9  # what a careless client claims
    for step in template.execution_steps:
        step.run_id = ""  # (the steps then belong to whichever id the run has)
    through_one, through_batch = run_pb2.Run(), run_pb2.Run()
    through_one.CopyFrom(template)
    through_batch.CopyFrom(template)
    through_batch.id = make_run().id
    await runs.stub.RecordRun(rs.RecordRunRequest(run=through_one))
    assert outcomes(await runs.stub.RecordRuns(batch(through_batch))) == ["CREATED"]

    one, other = await full(runs, through_one.id), await full(runs, through_batch.id)
    assert one.max_context_window_used == 0.375
    other.id = one.id
    for step in other.execution_steps:
        step.run_id = one.id
    assert other == one
    listed = await runs.stub.ListRuns(rs.ListRunsRequest(filter=f'id = "{through_batch.id}"'))
    assert [run.max_context_window_used for run in listed.runs] == [0.375]
