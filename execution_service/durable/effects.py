"""The agent loop's effects as checkpointed operations: each model call and each tool call is checkpointed with its
result in the run's journal (execution_service.durable.checkpoints).

The loop is unchanged (execution_service.engine.loop); it receives these wrappers as its model and tool providers,
the way pydantic-ai's DBOS agent wraps an unchanged agent. A resumed run gets the checkpointed result of every call
that completed and never makes it again; a call that was in flight when the replica stopped runs again, with the
same idempotency key in the MCP request's `_meta` (`agentrun/idempotency-key`: "<run id>:<call id>").

A run replays by the numbers of its operations, reserved in the order the run decides them, so they are the same
on every execution. Before each model call the run's pending stream writes are flushed. The tool calls of one turn
run concurrently, as in the embedded mode: their operation numbers are reserved synchronously, in call order, as soon
as the model's answer is recorded, before anything of the turn awaits (`ToolStepReservations`); each call then runs
its operation whenever it gets there. A resumed run gets the checkpointed result of each call that completed (not
executed again) and runs again only those that were in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from agentrun_core.domain import ErrorReason, ModelAttempt
from execution_service.durable.checkpoints import Checkpoints, Operation
from execution_service.durable.children import CHILD_STEP, ChildCall, DurableChildren, child_run_id
from execution_service.durable.recorder import replayed_timing
from execution_service.engine.instrumentation import replayed_call
from execution_service.engine.live_run import LiveRun
from execution_service.engine.step_recorder import utc_now
from execution_service.model.base import FunctionCall, ModelError, ModelProvider, ModelRequest, ModelResponse
from execution_service.tools.base import ResolvedTool, ToolCallContext, ToolOutcome, ToolProvider, current_tool_call_id
from execution_service.tools.request_meta import IDEMPOTENCY_KEY, tool_request_meta

log = logging.getLogger(__name__)

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
    """Tells the recorder the call's checkpointed timing when the result comes from an earlier execution (and the
    run's telemetry that the call was replayed: engine.instrumentation.replayed_call)."""
    replayed = timed.started < asked_at
    replayed_timing.set((timed.started, timed.duration) if replayed else None)
    replayed_call.set(replayed)


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
    def __init__(self, inner: ModelProvider, flush: Flush, gate: CancelGate, checkpoints: Checkpoints) -> None:
        self.name = inner.name
        self._inner = inner
        self._flush = flush
        self._gate = gate
        self._checkpoints = checkpoints

    async def generate(self, request: ModelRequest) -> ModelResponse:
        operation = self._checkpoints.reserve()
        await self._flush()
        asked_at = utc_now()
        timed = await operation.run_async({"name": MODEL_STEP}, self._generate, request)
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


@dataclass
class ToolStepReservations:
    """The operations of one turn's tool calls, reserved in call order when the model's answer is recorded (the
    recorder calls `reserve` synchronously, before the turn awaits anything), taken by each call when it runs. A
    reservation never taken (an unknown tool, a turn that ends the run, a fork's replayed call) leaves the same gap in
    the operation numbers on every execution."""

    checkpoints: Checkpoints
    _by_call: defaultdict[str, deque[Operation]] = field(default_factory=lambda: defaultdict(deque))

    def reserve(self, calls: Sequence[FunctionCall]) -> None:
        self._by_call.clear()  # a new turn: the previous turn's unused reservations are gaps
        for call in calls:
            self._by_call[call.id].append(self.checkpoints.reserve())

    def peek(self, call_id: str) -> Operation | None:
        reserved = self._by_call.get(call_id)
        return reserved[0] if reserved else None

    def take(self, call_id: str) -> Operation | None:
        reserved = self._by_call.get(call_id)
        return reserved.popleft() if reserved else None


class DurableToolProvider:
    def __init__(
        self,
        inner: ToolProvider,
        run_id: str,
        flush: Flush,
        gate: CancelGate,
        reservations: ToolStepReservations,
        caught_up: Flush | None = None,
        children: DurableChildren | None = None,
    ) -> None:
        """`caught_up`: waits until a resumed run replayed the steps its stream held (DurableStepRecorder);
        `children`: runs the calls of tools that start a run (sub-agents; durable.children)."""
        self._inner = inner
        self._children = children
        self._run_id = run_id
        self._flush = flush
        self._gate = gate
        self._reservations = reservations
        self._caught_up = caught_up

    async def resolve(self, patterns: list[str]) -> list[ResolvedTool]:
        return await self._inner.resolve(patterns)

    def replayed_child_run_id(self, call_id: str) -> str:
        """A sub-agent call's child run id, derived from the step id reserved for the call: a resumed run's call
        names the same child (tools.base.ReplaysChildRuns)."""
        reservation = self._reservations.peek(call_id)
        return child_run_id(self._run_id, reservation.step_id) if reservation is not None else ""

    async def call(
        self, tool: ResolvedTool, arguments: dict[str, Any], timeout_s: float, context: ToolCallContext | None = None
    ) -> ToolOutcome:
        """`context` names a sub-agent call's child run."""
        call_id = current_tool_call_id.get()
        key = f"{self._run_id}:{call_id}"
        asked_at = utc_now()
        reservation = self._reservations.take(call_id)
        if reservation is None:
            # A call the model's recorded answer did not announce: it takes the next operation number, which is the
            # same on every execution only when nothing else of the run runs meanwhile.
            log.warning("a durable tool call without a reserved operation", extra={"run_id": self._run_id})
            reservation = self._reservations.checkpoints.reserve()
            await self._flush()
        outcome: ToolOutcome
        if tool.starts_run and self._children is not None and context is not None:
            child = await reservation.run_async({"name": CHILD_STEP}, self._children_call, tool, arguments, context)
            _note_replayed(child, asked_at)
            self._children.settle(child.value)
            outcome = child.value.outcome
            timed_started = child.started
        else:
            timed = await reservation.run_async({"name": TOOL_STEP}, self._call, tool, arguments, timeout_s, key)
            _note_replayed(timed, asked_at)
            outcome = timed.value
            timed_started = timed.started
        if timed_started >= asked_at and self._caught_up is not None:
            await self._caught_up()  # a call made again: after the turn's replayed results
        return outcome

    async def _children_call(
        self, tool: ResolvedTool, arguments: dict[str, Any], context: ToolCallContext
    ) -> Timed[ChildCall]:
        assert self._children is not None
        self._gate.check()
        return await _timed(self._children.call_step(tool, arguments, context))

    async def _call(
        self, tool: ResolvedTool, arguments: dict[str, Any], timeout_s: float, key: str
    ) -> Timed[ToolOutcome]:
        self._gate.check()
        token = tool_request_meta.set({IDEMPOTENCY_KEY: key})
        try:
            return await _timed(self._inner.call(tool, arguments, timeout_s))
        finally:
            tool_request_meta.reset(token)
