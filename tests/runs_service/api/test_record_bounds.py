"""What RecordRun refuses because it contradicts the contract (run.proto) or would break the queries over every run,
and how those queries answer for such records stored before they were refused."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
import sqlalchemy as sa
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs

from agentrun_core.grpc_status import error_reason
from agentrun_core.proto_convert import run_to_pb
from runs_service.storage.engine import sync_url
from tests.runs_service.api.conftest import RunsClient
from tests.support.composition import top_level
from tests.support.run_factory import make_run

INT64_MAX = 2**63 - 1


async def refused(runs: RunsClient, run: run_pb2.Run) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await runs.stub.RecordRun(rs.RecordRunRequest(run=run))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    return caught.value.details() or ""


async def test_absurd_or_contradictory_records_are_refused_naming_the_field(runs: RunsClient) -> None:
    huge = run_to_pb(make_run())
    huge.token_usage.total_tokens = INT64_MAX
    assert (await refused(runs, huge)).startswith("run.token_usage.total_tokens: must be at most 10^12")

    huge_call = run_to_pb(make_run())
    huge_call.execution_steps[0].model_call.usage.input_tokens = 10**12 + 1
    assert "run.execution_steps[0].model_call.usage.input_tokens: must be at most 10^12" in await refused(
        runs, huge_call
    )

    wrong_duration = run_to_pb(make_run())
    wrong_duration.duration.seconds += 9999
    message = await refused(runs, wrong_duration)
    assert message.startswith("run.duration: must be end_time - start_time"), message

    for trace_id in ("zz", "0AF7651916CD43DD8448EB211C80319C", "0" * 32):
        bad_trace = run_to_pb(make_run())
        bad_trace.trace_id = trace_id
        assert (await refused(runs, bad_trace)).startswith("run.trace_id: must be empty or a W3C trace id")

    not_a_code = run_to_pb(make_run())
    not_a_code.cost.currency_code = "dollars"  # empty means USD (run.proto)
    assert (await refused(runs, not_a_code)).startswith("run.cost.currency_code: must be an ISO 4217 code")

    unknown_status = run_to_pb(make_run())
    unknown_status.status = 99  # type: ignore[assignment]  # a newer client's value
    assert (await refused(runs, unknown_status)).startswith("run.status: unknown RunStatus value 99; use one of")

    assert list((await runs.stub.ListRuns(rs.ListRunsRequest())).runs) == []  # nothing was stored

    # A run of a realistic size and a tree's totals (not bounded: not summed over runs) are fine.
    fine = run_to_pb(make_run())
    fine.token_usage.total_tokens = 10**12
    await runs.stub.RecordRun(rs.RecordRunRequest(run=fine))


async def test_token_sums_beyond_64_bits_are_out_of_range_not_a_retry(runs: RunsClient, db_url: str) -> None:
    """Records stored before token counts were bounded can hold any int64: a sum over two of them cannot be sent.
    The answer must not be UNAVAILABLE (clients retry that forever) but OUT_OF_RANGE saying what to do."""
    first = top_level(session_id="chat-1")
    second = top_level(session_id="chat-1", base=first, start_offset_s=5)
    for run in (first, second):
        await runs.stub.RecordRun(rs.RecordRunRequest(run=run_to_pb(run)))
    engine = sa.create_engine(sync_url(db_url))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE runs SET total_tokens = :huge"), {"huge": INT64_MAX})
    engine.dispose()

    def stats(group_by: rs.StatsGroupBy, filter: str = "") -> rs.GetRunStatsRequest:
        request = rs.GetRunStatsRequest(group_by=group_by, filter=filter)
        request.start_time.FromDatetime(first.start_time - timedelta(hours=1))
        request.end_time.FromDatetime(first.start_time + timedelta(hours=1))
        return request

    calls = [
        lambda: runs.stub.GetRunStats(stats(rs.STATS_GROUP_BY_USER)),
        lambda: runs.stub.GetRunStats(stats(rs.STATS_GROUP_BY_AGENT)),
        lambda: runs.stub.ListSessions(rs.ListSessionsRequest()),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call()
        assert caught.value.code() == grpc.StatusCode.OUT_OF_RANGE, caught.value.details()
        assert error_reason(caught.value) == "SUM_OUT_OF_RANGE"
        assert "narrow the filter" in (caught.value.details() or "")

    # Each run alone still reads back and sums: a filter that matches one of them answers.
    one = await runs.stub.GetRunStats(stats(rs.STATS_GROUP_BY_AGENT, f'id = "{first.id}"'))
    assert one.groups[0].token_usage.total_tokens == INT64_MAX
