"""The agent loop's effects as DBOS steps: each model call and each tool call is checkpointed with its result.

The loop is unchanged (execution_service.engine.loop); it receives these wrappers as its model and tool providers,
the way pydantic-ai's DBOS agent wraps an unchanged agent. A resumed run gets the checkpointed result of every call
that completed and never makes it again; a call that was in flight when the replica stopped runs again, with the
same idempotency key in the MCP request's `_meta` (`agentrun/idempotency-key`: "<run id>:<call id>").

Before each step the run's pending stream writes are flushed, so the workflow's operations (stream writes, steps)
happen in the same order on every execution, which is what DBOS replays by. For the same reason a durable run's
tool calls of one turn run one after another (DurableExecution passes max_parallel_tools=1).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from dbos import DBOS

from agentrun_core.domain import ErrorReason, ModelAttempt
from execution_service.durable.recorder import replayed_timing
from execution_service.engine.live_run import LiveRun
from execution_service.engine.step_recorder import utc_now
from execution_service.model.base import ModelError, ModelProvider, ModelRequest, ModelResponse
from execution_service.tools.base import ResolvedTool, ToolCallContext, ToolOutcome, ToolProvider, current_tool_call_id
from execution_service.tools.request_meta import IDEMPOTENCY_KEY, tool_request_meta

MODEL_STEP = "agentrun.model_call"
TOOL_STEP = "agentrun.tool_call"


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Timed(Generic[T]):
    """A call's result with when it started and how long it took, checkpointed together: a resumed run that gets the
    result back records the call's own time, not the time of its replay (the clock is an effect too)."""

    value: T
    started: datetime
    duration: timedelta


async def _timed(call: Awaitable[T]) -> Timed[T]:
    started, clock = utc_now(), time.perf_counter()
    value = await call
    return Timed(value, started, timedelta(seconds=time.perf_counter() - clock))


def _note_replayed(timed: Timed[Any], asked_at: datetime) -> None:
    """Tells the recorder the call's checkpointed timing when the result comes from an earlier execution."""
    replayed_timing.set((timed.started, timed.duration) if timed.started < asked_at else None)


@dataclass(frozen=True, slots=True)
class ModelFailure:
    """A ModelError as a checkpointed result (a step's exception would be replayed by unpickling it)."""

    reason: str
    message: str
    code: int | None
    status: str
    retryable: bool
    retry_after_s: float | None
    attempts: tuple[ModelAttempt, ...]

    @classmethod
    def of(cls, error: ModelError) -> ModelFailure:
        return cls(
            str(error.reason),
            error.message,
            error.code,
            error.status,
            error.retryable,
            error.retry_after_s,
            error.attempts,
        )

    def error(self) -> ModelError:
        error = ModelError(
            ErrorReason(self.reason) if self.reason in ErrorReason.__members__ else ErrorReason.MODEL_ERROR,
            self.message,
            code=self.code,
            status=self.status,
            retryable=self.retryable,
            retry_after_s=self.retry_after_s,
        )
        error.attempts = self.attempts
        return error


@dataclass
class CancelGate:
    """An immediate cancellation the run learned of while it was not running a call (a CancelRun stored while it
    was being resumed): the next call it would make is not made."""

    live: LiveRun

    def check(self) -> None:
        if self.live.cancel_requested and not self.live.control.stop_after_turn:
            raise asyncio.CancelledError("the run was cancelled")


Flush = Callable[[], Awaitable[None]]


class DurableModelProvider:
    def __init__(self, inner: ModelProvider, flush: Flush, gate: CancelGate) -> None:
        self.name = inner.name
        self._inner = inner
        self._flush = flush
        self._gate = gate

    async def generate(self, request: ModelRequest) -> ModelResponse:
        await self._flush()
        asked_at = utc_now()
        timed = await DBOS.run_step_async({"name": MODEL_STEP}, self._generate, request)
        _note_replayed(timed, asked_at)
        if isinstance(timed.value, ModelFailure):
            raise timed.value.error()
        return timed.value

    async def _generate(self, request: ModelRequest) -> Timed[ModelResponse | ModelFailure]:
        self._gate.check()
        return await _timed(self._answer(request))

    async def _answer(self, request: ModelRequest) -> ModelResponse | ModelFailure:
        try:
            return await self._inner.generate(request)
        except ModelError as exc:
            return ModelFailure.of(exc)


class DurableToolProvider:
    def __init__(self, inner: ToolProvider, run_id: str, flush: Flush, gate: CancelGate) -> None:
        self._inner = inner
        self._run_id = run_id
        self._flush = flush
        self._gate = gate

    async def resolve(self, patterns: list[str]) -> list[ResolvedTool]:
        return await self._inner.resolve(patterns)

    async def call(
        self, tool: ResolvedTool, arguments: dict[str, Any], timeout_s: float, context: ToolCallContext | None = None
    ) -> ToolOutcome:
        """`context` is not needed: sub-agents (the tools that need it) do not run in the durable mode."""
        await self._flush()
        key = f"{self._run_id}:{current_tool_call_id.get()}"
        asked_at = utc_now()
        timed = await DBOS.run_step_async({"name": TOOL_STEP}, self._call, tool, arguments, timeout_s, key)
        _note_replayed(timed, asked_at)
        return timed.value

    async def _call(
        self, tool: ResolvedTool, arguments: dict[str, Any], timeout_s: float, key: str
    ) -> Timed[ToolOutcome]:
        self._gate.check()
        token = tool_request_meta.set({IDEMPOTENCY_KEY: key})
        try:
            return await _timed(self._inner.call(tool, arguments, timeout_s))
        finally:
            tool_request_meta.reset(token)
