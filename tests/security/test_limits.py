"""Input caps and per-user limits: oversized requests, concurrent streams per user, the ExecuteAgent rate limit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentrun_core.grpc_status import error_reason
from tests.security.support import drain, retry_delay_s, secure_stack, status_of
from tests.support.auth import ALICE, BOB, SERVICE


async def test_oversized_requests_get_clean_statuses(tmp_path: Path) -> None:
    async with secure_stack(tmp_path, max_message_bytes=64 * 1024, max_task_bytes=1000) as stack:
        execution = stack.execution_stub(ALICE)
        # Over the task cap: INVALID_ARGUMENT naming the field.
        code, details = await status_of(
            lambda: drain(execution.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="echo", task="x" * 2000)))
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "task" in details
        # Over the gRPC message cap: RESOURCE_EXHAUSTED before any handler runs.
        code, _ = await status_of(
            lambda: drain(execution.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="echo", task="x" * 100_000)))
        )
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        code, _ = await status_of(
            lambda: drain(
                execution.ExecuteAgent(
                    ex.ExecuteAgentRequest(agent_name="echo", task="t", variables={"v": "y" * 70_000})
                )
            )
        )
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        runs = stack.runs_stub(SERVICE)
        code, _ = await status_of(lambda: runs.ListRuns(rs.ListRunsRequest(filter="x" * (17 * 1024 * 1024))))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        big = run_pb2.Run(
            id="0190a0f0-0000-7000-8000-000000000002", agent_name="a", final_response="z" * (9 * 1024 * 1024)
        )
        code, details = await status_of(lambda: runs.RecordRun(rs.RecordRunRequest(run=big)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "AGENTRUN_MAX_RECORD_BYTES" in details
        for address in (stack.runs_address, stack.execution_address):
            reply = await health_pb2_grpc.HealthStub(stack.channel(address)).Check(health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_concurrent_streams_per_user_are_capped(tmp_path: Path) -> None:
    async with secure_stack(tmp_path, max_streams_per_user=2, test_model_latency_s=5.0) as stack:
        alice = stack.execution_stub(ALICE)
        streams = [alice.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="echo", task="slow")) for _ in range(2)]
        run_ids = [(await s.read()).run_started.run_id for s in streams]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await drain(alice.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="echo", task="one more")))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_reason(caught.value) == "TOO_MANY_STREAMS"
        assert "AGENTRUN_MAX_STREAMS_PER_USER" in (caught.value.details() or "")
        code, _ = await status_of(lambda: drain(alice.WatchRun(ex.WatchRunRequest(run_id=run_ids[0]))))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Another user is not affected.
        bob_stream = stack.execution_stub(BOB).ExecuteAgent(ex.ExecuteAgentRequest(agent_name="echo", task="hi"))
        assert (await bob_stream.read()).WhichOneof("event") == "run_started"
        bob_stream.cancel()
        # Closing a stream frees its slot (the disconnect cancels that run).
        streams[0].cancel()
        for _ in range(100):
            watch = alice.WatchRun(ex.WatchRunRequest(run_id=run_ids[1]))
            try:
                assert (await watch.read()).WhichOneof("event") == "run_started"
                watch.cancel()
                break
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                await asyncio.sleep(0.05)
        else:
            pytest.fail("the closed stream's slot was never freed")
        streams[1].cancel()


async def test_execute_agent_is_rate_limited_per_user_with_retry_info(tmp_path: Path) -> None:
    async with secure_stack(tmp_path, rate_limit_per_minute=6, rate_limit_burst=2) as stack:
        for _ in range(2):
            await stack.execute(ALICE, agent_name="echo", task="hi")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.execute(ALICE, agent_name="echo", task="hi")
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_reason(caught.value) == "RATE_LIMITED"
        delay = retry_delay_s(caught.value)
        assert delay is not None and 0 < delay <= 10.0
        events = await stack.execute(BOB, agent_name="echo", task="hi")  # bob has his own bucket
        assert events[-1].WhichOneof("event") == "run_finished"
