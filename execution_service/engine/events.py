"""What a live run emits, in order: one RunStartedEvent, its steps, one RunFinishedEvent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from agentrun_core.domain import Cost, ExecutionStep, RunError, RunStatus, TokenUsage


@dataclass(frozen=True, slots=True)
class RunStartedEvent:
    run_id: str
    agent_name: str
    agent_version: str
    model_name: str
    start_time: datetime
    trace_id: str
    user: str


@dataclass(frozen=True, slots=True)
class StepEvent:
    step: ExecutionStep
    # The step serialized as an agentrun.runs.v1.ExecutionStep, when the live-steps journal made it (the servicer
    # sends these bytes rather than converting the step again).
    encoded: bytes | None = None


@dataclass(frozen=True, slots=True)
class RunFinishedEvent:
    run_id: str
    status: RunStatus
    final_response: str
    token_usage: TokenUsage
    duration: timedelta
    end_time: datetime
    steps_taken: int
    tool_call_count: int
    error: RunError | None
    cost: Cost | None
    # RunsService had acknowledged the complete run when this event was made (GetRun returns it); False: it is in
    # the durable outbox and will be delivered (RunsService slow or down).
    recorded: bool = False


RunEvent = RunStartedEvent | StepEvent | RunFinishedEvent
