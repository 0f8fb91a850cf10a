from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from agentrun_core.backoff import Backoff
from agentrun_core.domain import (
    ExecutionStep,
    FinalResponse,
    ModelCall,
    Run,
    RunError,
    RunStatus,
    TokenUsage,
)
from execution_service.publish.outbox import Outbox
from execution_service.publish.publisher import OutboxPublisher
from tests.execution_service.publish.fake_runs_server import FAST_RECONNECT_OPTIONS, FakeRunsServer

T0 = datetime(2026, 11, 3, 12, 0, 0, tzinfo=UTC)
FAST_BACKOFF = Backoff(initial_s=0.05, max_s=0.3, jitter=0.5)


def make_run(run_id: str, status: RunStatus = RunStatus.RUNNING, steps: int = 0) -> Run:
    execution_steps = tuple(
        ExecutionStep(
            run_id=run_id,
            sequence=i + 1,
            time=T0 + timedelta(seconds=i),
            payload=ModelCall(model="gemini-2.5-flash", usage=TokenUsage(input_tokens=10, output_tokens=5)),
        )
        for i in range(steps)
    )
    terminal = status.is_terminal
    if status is RunStatus.COMPLETED:
        execution_steps += (
            ExecutionStep(
                run_id=run_id, sequence=steps + 1, time=T0 + timedelta(seconds=steps), payload=FinalResponse("ok")
            ),
        )
    return Run(
        id=run_id,
        agent_name="clock",
        status=status,
        start_time=T0,
        task="what time is it?",
        model_name="gemini-2.5-flash",
        end_time=T0 + timedelta(seconds=5) if terminal else None,
        duration=timedelta(seconds=5) if terminal else None,
        final_response="ok" if status is RunStatus.COMPLETED else "",
        error=RunError(reason="MODEL_ERROR", message="boom") if status is RunStatus.FAILED else None,
        steps_taken=len(execution_steps),
        execution_steps=execution_steps,
    )


@pytest.fixture
def outbox_path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.sqlite"


@pytest.fixture
async def outbox(outbox_path: Path) -> AsyncIterator[Outbox]:
    ob = await Outbox.open(outbox_path)
    yield ob
    await ob.close()


@pytest.fixture
async def server() -> AsyncIterator[FakeRunsServer]:
    async with FakeRunsServer() as srv:
        yield srv


@pytest.fixture
async def channel(server: FakeRunsServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(server.target, options=FAST_RECONNECT_OPTIONS) as ch:
        yield ch


PublisherFactory = Callable[..., Awaitable[OutboxPublisher]]


@pytest.fixture
async def make_publisher(channel: grpc.aio.Channel) -> AsyncIterator[PublisherFactory]:
    """Creates started publishers with fast retries; stops them at the end of the test."""
    created: list[OutboxPublisher] = []

    async def factory(outbox: Outbox, **kwargs: object) -> OutboxPublisher:
        kwargs.setdefault("backoff", FAST_BACKOFF)
        kwargs.setdefault("call_timeout_s", 2.0)
        publisher = OutboxPublisher(outbox, channel, **kwargs)  # type: ignore[arg-type]
        publisher.start()
        created.append(publisher)
        return publisher

    yield factory
    for p in created:
        await p.stop(drain_timeout_s=0)
