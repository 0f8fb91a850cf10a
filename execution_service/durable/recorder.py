"""The step recorder of a durable run: the same recorder, replaying what the run's stream already holds.

A resumed workflow runs the agent loop again from the start; its model and tool calls return their checkpointed
results, so the loop records the same steps in the same order. For each step the stream already holds, the recorder
keeps the stream's copy (its time and duration are those of the first execution: the clock is not replayed), and its
write is a checkpointed operation that DBOS does not repeat. As soon as the replay re-emitted the last step the
stream held (or before the first new step, when it held none), a resumed run records one RunResumed step (the gap,
this replica, the previous one): a watcher sees the resumption at once, not after the call the crash interrupted has
run again. A later resumption replays the RunResumed steps of earlier ones where they are.

The calls of one turn run concurrently, at most AGENTRUN_MAX_PARALLEL_TOOLS at once, so their steps need not come back
in the order the stream holds them: a checkpointed result returns at once where the call took seconds, and a call
beyond the limit starts when another's result frees a slot. A call's step is matched to that call's step in the
stream (by call id, within the turn's tool steps), and the stream's steps are re-emitted in the stream's order as soon
as every one before them came back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any

from agentrun_core.domain import (
    ExecutionStep,
    RunResumed,
    StepKind,
    StepPayload,
    ToolCallFinished,
    ToolCallStarted,
    step_kind,
)
from execution_service.engine.run_tree import RunNode
from execution_service.engine.step_recorder import StepRecorder, utc_now
from execution_service.model.base import FunctionCall, ModelError, ModelResponse
from execution_service.redaction import Redactor
from execution_service.tools.base import ResolvedTool, ToolOutcome, current_tool_call_id

log = logging.getLogger(__name__)

# How long a new tool result of a resumed turn waits for the turn's replayed results (DurableStepRecorder.caught_up).
CATCH_UP_TIMEOUT_S = 10.0

# Set by the durable providers when a call's result was checkpointed by an earlier execution: when the call started
# and how long it took then (its step may be missing from the stream: the replica died before writing it).
replayed_timing: ContextVar[tuple[datetime, timedelta] | None] = ContextVar("replayed_timing", default=None)


def _replayed() -> tuple[datetime, timedelta] | None:
    timing = replayed_timing.get()
    if timing is not None:
        replayed_timing.set(None)
    return timing


# The steps of a turn's tool calls, which may come back in another order than the stream holds them (with the
# RunResumed steps of earlier resumptions between them).
_TURN_STEPS = frozenset({StepKind.TOOL_CALL, StepKind.TOOL_RESULT, StepKind.RESUMED})


class ReplayDiverged(RuntimeError):
    """The resumed loop recorded another kind of step than the stream holds at that place."""


class DurableStepRecorder(StepRecorder):
    def __init__(
        self,
        run_id: str,
        emit: Callable[[ExecutionStep], None],
        redactor: Redactor,
        flush: Callable[[], Awaitable[None]],
        *,
        replica: str,
        recorded: tuple[ExecutionStep, ...] = (),
        resumed_from: str | None = None,
        started_at: datetime | None = None,
        function_calls: Callable[[Sequence[FunctionCall]], None] | None = None,
        tree: RunNode | None = None,
    ) -> None:
        """`recorded`: the steps the stream holds; `resumed_from`: the replica that ran the run before (None: this
        is the run's first execution, nothing to mark); `function_calls`: called with the function calls of each
        model answer when it is recorded, before the turn awaits anything (effects.ToolStepReservations); `tree`: the
        run's place in its tree of sub-agent runs."""
        super().__init__(run_id, emit, redactor, flush, tree)
        self._function_calls = function_calls
        self._recorded = recorded
        self._replica = replica
        self._resumed_from = resumed_from
        self._started_at = started_at or utc_now()
        # Indexes of steps of the stream that the replay recorded again ahead of the stream's order (a turn's tool
        # steps), re-emitted once every step before them was.
        self._ahead: set[int] = set()
        # When the calls in flight at the stop started (the stream holds their start, not their result): a call made
        # again takes its duration from then.
        self._first_started: dict[str, datetime] = {}
        for step in recorded:
            if isinstance(step.payload, ToolCallStarted):
                self._first_started[step.payload.call_id] = step.time
            elif isinstance(step.payload, ToolCallFinished):
                self._first_started.pop(step.payload.call_id, None)
        self._caught_up = asyncio.Event()
        self._on_caught_up: list[Callable[[], None]] = []
        self._note_caught_up()

    @property
    def replaying(self) -> bool:
        """True while the loop records steps the stream already holds."""
        return len(self.steps) < len(self._recorded)

    async def caught_up(self, timeout_s: float = CATCH_UP_TIMEOUT_S) -> None:
        """Waits until the loop recorded again every step the stream held. The tool calls of a resumed turn run
        concurrently: a call made again (it was in flight at the crash) waits for the turn's completed calls, whose
        results come back from their checkpoints, so its result does not take the place of one of theirs in the
        stream. Gives up after `timeout_s` (logged)."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._caught_up.wait()
        except TimeoutError:
            log.warning(
                "a resumed run's new step comes before its replay caught up",
                extra={"run_id": self.run_id, "replayed": len(self.steps), "recorded": len(self._recorded)},
            )

    def when_caught_up(self, callback: Callable[[], None]) -> None:
        """Calls `callback` once the loop recorded again every step the stream held (at once if it has)."""
        if self._caught_up.is_set():
            callback()
        else:
            self._on_caught_up.append(callback)

    def _note_caught_up(self) -> None:
        if self._caught_up.is_set():
            return
        if all(isinstance(step.payload, RunResumed) for step in self._recorded[len(self.steps) :]):
            self._caught_up.set()
            callbacks, self._on_caught_up = self._on_caught_up, []
            for callback in callbacks:
                callback()

    def record(self, payload: StepPayload, *, time: datetime, duration: timedelta = timedelta(0)) -> ExecutionStep:
        step = self._record(payload, time=time, duration=duration)
        self._note_caught_up()
        return step

    def _record(self, payload: StepPayload, *, time: datetime, duration: timedelta) -> ExecutionStep:
        self._replay_markers()
        if self.replaying:
            index = self._recorded_index(payload)
            self._ahead.add(index)
            self._emit_replayed()
            return self._recorded[index]
        if self._resumed_from is not None:
            self._mark_resumed()
        return super().record(payload, time=time, duration=duration)

    def _recorded_index(self, payload: StepPayload) -> int:
        """Where the stream holds the step the replay records now: at the next place, or for a tool call's step
        further on among the turn's tool steps (the stream's one of the same call)."""
        place = len(self.steps)
        kind = step_kind(payload)
        kept = self._recorded[place].payload
        if not isinstance(payload, ToolCallStarted | ToolCallFinished):
            if step_kind(kept) != kind:
                raise ReplayDiverged(f"run {self.run_id}: step {place + 1} was a {step_kind(kept)} and is now a {kind}")
            return place
        for index in range(place, len(self._recorded)):
            held = self._recorded[index].payload
            if step_kind(held) not in _TURN_STEPS:
                break  # the turn ends here in the stream
            if (
                index not in self._ahead
                and step_kind(held) == kind
                and getattr(held, "call_id", None) == payload.call_id
            ):
                return index
        raise ReplayDiverged(
            f"run {self.run_id}: step {place + 1} was a {step_kind(kept)}, and the turn's steps from there hold no "
            f"{kind} of call {payload.call_id!r} ({payload.tool_name})"
        )

    def _emit_replayed(self) -> None:
        """Re-emits the stream's steps in its order, as far as the replay recorded them again."""
        while self.replaying:
            place = len(self.steps)
            kept = self._recorded[place]
            if place in self._ahead:
                self._ahead.discard(place)
            elif not isinstance(kept.payload, RunResumed):
                return
            self.steps.append(kept)
            self._emit(kept)
        if self._resumed_from is not None:
            # The replay re-emitted the last step the stream held: the run is resumed now, so a watcher sees
            # RunResumed at once rather than after the call the crash interrupted has run again.
            self._mark_resumed()

    def _replay_markers(self) -> None:
        """Keeps the RunResumed steps of earlier resumptions where the stream holds them."""
        while len(self.steps) < len(self._recorded):
            kept = self._recorded[len(self.steps)]
            if not isinstance(kept.payload, RunResumed):
                return
            self.steps.append(kept)
            self._emit(kept)

    def _mark_resumed(self) -> None:
        previous, self._resumed_from = self._resumed_from or "", None
        now = utc_now()
        last = self.steps[-1].time if self.steps else self._started_at
        gap = max(now - last.astimezone(UTC), timedelta(0))
        super().record(RunResumed(gap=gap, replica=self._replica, previous_replica=previous), time=now)

    def model_call(self, response: ModelResponse, *, started: datetime, duration: timedelta) -> None:
        if self._function_calls is not None:
            self._function_calls(response.function_calls)
        if (timing := _replayed()) is not None:
            started, duration = timing
        super().model_call(response, started=started, duration=duration)

    def failed_model_call(self, model: str, error: ModelError, *, started: datetime, duration: timedelta) -> None:
        if (timing := _replayed()) is not None:
            started, duration = timing
        super().failed_model_call(model, error, started=started, duration=duration)

    def tool_finished(
        self,
        call_id: str,
        tool_name: str,
        outcome: ToolOutcome,
        *,
        time: datetime,
        duration: timedelta,
        size_bytes: int | None = None,
        model_bytes: int = 0,
        child_run_id: str = "",
    ) -> None:
        if (timing := _replayed()) is not None:
            time, duration = timing[0] + timing[1], timing[1]
        elif (first := self._first_started.pop(call_id, None)) is not None:
            # A call made again after a resumption (it was in flight at the crash): it took the run from its first
            # start to this result, the gap included (the RunResumed step between tells why).
            duration = max(time - first, duration)
        super().tool_finished(
            call_id,
            tool_name,
            outcome,
            time=time,
            duration=duration,
            size_bytes=size_bytes,
            model_bytes=model_bytes,
            child_run_id=child_run_id,
        )

    def tool_started(
        self, call_id: str, tool: ResolvedTool, arguments: dict[str, Any], *, time: datetime, child_run_id: str = ""
    ) -> None:
        # The durable tool provider reads it for the call's idempotency key (the call runs in this task).
        current_tool_call_id.set(call_id)
        super().tool_started(call_id, tool, arguments, time=time, child_run_id=child_run_id)
