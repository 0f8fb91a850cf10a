"""Spans are opened and closed in the same context: streaming runs never make OpenTelemetry log "Failed to detach
context" (which it does when a context token is detached in another context than the one it was attached in)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2

from tests.fakes.gemini_server import FakeFunctionCall, FakeResponse
from tests.support.stack import agent_source, running_stack
from tests.telemetry.test_run_trace import telemetries

AGENTS = {"plain": agent_source(model="gemini-2.5-flash", tools=["test/echo"])}


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_many_streams_end_without_a_failed_detach(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    execution, runs, _, _ = telemetries()
    errors = Errors()
    otel = logging.getLogger("opentelemetry.context")
    otel.addHandler(errors)
    try:
        async with running_stack(
            tmp_path, AGENTS, telemetry=execution, runs_telemetry=runs, rate_limit_per_minute=0.0
        ) as stack:

            def turn(body: dict[str, object]) -> FakeResponse:
                contents = body.get("contents") or []
                assert isinstance(contents, list)
                if len(contents) > 1:
                    return FakeResponse(text="done")
                return FakeResponse(function_calls=[FakeFunctionCall("echo", {"text": "x"}, id="e1")])

            stack.gemini.set_responder(turn)
            stub = stack.execution_stub()
            # Streams read to the end, streams the client drops after RunStarted (detached runs) and streams it
            # drops in the middle of a run (cancelling it): every way a stream ends.
            for _ in range(6):

                async def full() -> None:
                    events = [e async for e in stub.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="plain", task="t"))]
                    assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED

                async def dropped() -> None:
                    call = stub.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="plain", task="t", detach=True))
                    async for event in call:
                        if event.WhichOneof("event") == "run_started":
                            call.cancel()
                            break

                async def dropped_mid_run() -> None:
                    call = stub.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="plain", task="t"))
                    async for event in call:
                        if event.WhichOneof("event") == "step":
                            call.cancel()
                            break

                await asyncio.gather(
                    *(full() for _ in range(4)), *(dropped() for _ in range(2)), *(dropped_mid_run() for _ in range(2))
                )
            await asyncio.sleep(0.5)
    finally:
        otel.removeHandler(errors)
    failed = [r for r in errors.records if "detach" in r.getMessage().lower()]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and "detach" in r.getMessage()]
    assert not failed, f"{len(failed)} failed detaches, e.g. {failed[0].getMessage()}: {failed[0].exc_info}"
