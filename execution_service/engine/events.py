"""What a live run emits, in order: a RunQueuedEvent when it had to wait for a slot, one RunStartedEvent when it
starts executing, its steps, one RunFinishedEvent. A run that ends in the queue emits no RunStartedEvent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from agentrun_core.domain import Cost, ExecutionStep, ForkOrigin, RunError, RunStatus, TokenUsage


@dataclass(frozen=True, slots=True)
class RunQueuedEvent:
    run_id: str
    agent_name: str
    agent_version: str
    model_name: str
    enqueue_time: datetime
    # 1: next in line, when the run was queued; 0: unknown.
    position: int
    queue_name: str
    # None: the run may wait for ever.
    queue_timeout: timedelta | None
    trace_id: str
    user: str


@dataclass(frozen=True, slots=True)
class RunStartedEvent:
    run_id: str
    agent_name: str
    agent_version: str
    model_name: str
    start_time: datetime
    trace_id: str
    user: str
    # Composition (docs/agents.md): the run's session, and for a child run its parent and depth.
    session_id: str = ""
    parent_run_id: str = ""
    depth: int = 0
    # For a child run: the top-level run of its tree, and the parent's tool call that started it.
    root_run_id: str = ""
    parent_tool_call_id: str = ""
    # Durable mode: the replica that started the run.
    replica: str = ""
    # A fork's original run and the last of its steps it replayed.
    forked_from: ForkOrigin | None = None


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
    # token_usage and cost are the run's own; these add its descendants' (None when it has no children).
    token_usage_with_descendants: TokenUsage | None = None
    cost_with_descendants: Cost | None = None


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """An event as a durable run's stream holds it (execution_service.durable.stream): serialized as a
    WatchRunResponse, whose wire format ExecuteAgentResponse shares. `final`: it is the RunFinished event."""

    data: bytes
    final: bool = False


RunEvent = RunQueuedEvent | RunStartedEvent | StepEvent | RunFinishedEvent | EncodedEvent
