"""Forks: replaying a stored run up to one of its steps by wrapping the run's effects, not by changing the loop.

The fork runs the ordinary agent loop with a model provider and a tool provider that answer from the original's
record first: the model provider returns the original's recorded model replies, in order, for as many model calls
as the replayed steps hold, then calls the live model; the tool provider answers each call the replayed steps hold
a result for (or an override gives one for) from that, by call id, and calls the live tool otherwise. The loop
records the replayed answers as new steps like any others, so the fork's first steps repeat the original's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentrun_core.domain import ExecutionStep, ModelCall, Run, ToolCallFinished, ToolCallStarted
from execution_service.errors import InvalidRequest
from execution_service.history.transcript import ToolNamer, function_calls_of, stored_outcome
from execution_service.model.base import ModelProvider, ModelRequest, ModelResponse
from execution_service.tools.base import (
    ReplaysChildRuns,
    ResolvedTool,
    ToolCallContext,
    ToolOutcome,
    ToolProvider,
    current_tool_call_id,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ForkOverrides:
    """What the fork changes: the live model, generation config keys merged over the agent's, the task, and tool
    results by call id. Empty values change nothing."""

    model: str = ""
    generation_config: Mapping[str, Any] = field(default_factory=dict)
    task: str = ""
    tool_results: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Replay:
    """The original's recorded model replies (in order) and tool outcomes (by call id) the fork reuses."""

    responses: tuple[ModelResponse, ...]
    outcomes: Mapping[str, ToolOutcome]
    # The child run of each replayed sub-agent call of the original (by call id): the fork's call names that run,
    # which exists, rather than a new one it never starts.
    child_run_ids: Mapping[str, str] = field(default_factory=dict)


def forkable_range(original: Run) -> tuple[int, int] | None:
    """The steps a fork may replay up to: 1 up to the step before the original's last model call (which the fork
    makes again, live); None when there is no such step (no model call, or only one, as the first step)."""
    calls = [s.sequence for s in original.execution_steps if isinstance(s.payload, ModelCall)]
    if not calls or calls[-1] <= 1:
        return None
    return 1, calls[-1] - 1


def plan_replay(original: Run, from_sequence: int, tool_results: Mapping[str, str], namer: ToolNamer) -> Replay:
    """What a fork of `original` after step `from_sequence` reuses. Raises InvalidRequest for a step outside the
    forkable range, or a tool result override naming no call the replayed model replies asked for."""
    span = forkable_range(original)
    if span is None:
        raise InvalidRequest(
            "from_sequence",
            f"run {original.id} has no step before its last model call to fork from (a fork replays steps up to one "
            "before the last model call, which it makes again live)",
        )
    if not span[0] <= from_sequence <= span[1]:
        raise InvalidRequest(
            "from_sequence",
            f"must be between {span[0]} and {span[1]} for run {original.id} (its steps before its last model call, "
            f"step {span[1] + 1}), got {from_sequence}",
        )
    steps = original.execution_steps
    replayed = [s for s in steps if s.sequence <= from_sequence]
    responses = tuple(
        recorded_response(steps, index, namer)
        for index, step in enumerate(steps)
        if step.sequence <= from_sequence and isinstance(step.payload, ModelCall)
    )
    outcomes: dict[str, ToolOutcome] = {
        s.payload.call_id: stored_outcome(s.payload) for s in replayed if isinstance(s.payload, ToolCallFinished)
    }
    asked = [call.id for response in responses for call in response.function_calls]
    unknown = sorted(set(tool_results) - set(asked))
    if unknown:
        choices = ", ".join(asked) or "none"
        raise InvalidRequest(
            "overrides.tool_results",
            f"call id {unknown[0]!r} is not a tool call the model asked for in steps 1-{from_sequence} of run "
            f"{original.id}; those calls are: {choices}",
        )
    outcomes.update({call_id: ToolOutcome(text=text) for call_id, text in tool_results.items()})
    child_run_ids = {
        s.payload.call_id: s.payload.child_run_id
        for s in steps
        if isinstance(s.payload, ToolCallStarted) and s.payload.child_run_id and s.payload.call_id in outcomes
    }
    return Replay(responses, outcomes, child_run_ids)


def recorded_response(steps: Sequence[ExecutionStep], index: int, namer: ToolNamer) -> ModelResponse:
    """The model reply the ModelCall step `steps[index]` recorded (failed attempts are not repeated)."""
    call = steps[index].payload
    assert isinstance(call, ModelCall)
    return ModelResponse(
        model=call.model,
        text=call.text,
        function_calls=function_calls_of(steps, index, namer),
        usage=call.usage,
        finish_reason=call.finish_reason,
        time_to_first_token=call.time_to_first_token,
        thoughts=call.thoughts,
        input_token_limit=call.input_token_limit,
    )


class ReplayingModel:
    """The recorded replies first, in order; then the live provider."""

    def __init__(self, live: ModelProvider, responses: Sequence[ModelResponse]) -> None:
        self.name = live.name
        self._live = live
        self._responses = list(responses)
        self._next = 0

    async def generate(self, request: ModelRequest) -> ModelResponse:
        if self._next < len(self._responses):
            response = self._responses[self._next]
            self._next += 1
            return response
        return await self._live.generate(request)


class ReplayingTools:
    """Each call the replay holds an outcome for is answered from it (once); every other call goes to the live
    provider."""

    def __init__(
        self, live: ToolProvider, outcomes: Mapping[str, ToolOutcome], child_run_ids: Mapping[str, str] | None = None
    ) -> None:
        self._live = live
        self._outcomes = dict(outcomes)
        self._child_run_ids = dict(child_run_ids or {})

    def replayed_child_run_id(self, call_id: str) -> str:
        """For a sub-agent call answered from the replay: the original's child run, which the fork's call names (it
        starts none); "" for any other call."""
        if call_id in self._outcomes:
            return self._child_run_ids.get(call_id, "")
        # A live call: the live provider may choose its child's run id (the durable mode's are derived).
        return self._live.replayed_child_run_id(call_id) if isinstance(self._live, ReplaysChildRuns) else ""

    async def resolve(self, patterns: list[str]) -> list[ResolvedTool]:
        return await self._live.resolve(patterns)

    async def call(
        self, tool: ResolvedTool, arguments: dict[str, Any], timeout_s: float, context: ToolCallContext | None = None
    ) -> ToolOutcome:
        outcome = self._outcomes.pop(current_tool_call_id.get(), None)
        if outcome is not None:
            return outcome
        return await self._live.call(tool, arguments, timeout_s, context)
