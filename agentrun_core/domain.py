"""The run and its steps as plain Python values.

This module is the domain model both services share. It never imports generated protobuf code: the servicers
translate between these types and the `agentrun.*.v1` messages in `agentrun_core.proto_convert`.

Times are timezone-aware UTC datetimes and durations are timedeltas; both are kept to the microsecond.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, assert_never


class RunStatus(enum.StrEnum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"
    INTERRUPTED = "INTERRUPTED"
    # Accepted, waiting in the execution service's admission queue for a free slot.
    QUEUED = "QUEUED"

    @property
    def is_terminal(self) -> bool:
        return self is not RunStatus.RUNNING and self is not RunStatus.QUEUED


class ToolCallStatus(enum.StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    CANCELLED = "CANCELLED"


class ErrorReason(enum.StrEnum):
    """Stable codes for RunError.reason and tool errors. Clients switch on these strings."""

    MODEL_RATE_LIMITED = "MODEL_RATE_LIMITED"
    MODEL_UNAVAILABLE = "MODEL_UNAVAILABLE"
    MODEL_TIMEOUT = "MODEL_TIMEOUT"
    MODEL_ERROR = "MODEL_ERROR"
    MODEL_REQUEST_INVALID = "MODEL_REQUEST_INVALID"
    # The provider refused the credentials: a bad, expired or revoked API key, or one without access to the model.
    MODEL_AUTH_FAILED = "MODEL_AUTH_FAILED"
    PROMPT_BLOCKED = "PROMPT_BLOCKED"
    RESPONSE_BLOCKED = "RESPONSE_BLOCKED"
    MAX_TOKENS = "MAX_TOKENS"
    # The model ended a turn without function calls for another reason than STOP (MALFORMED_FUNCTION_CALL, ...).
    MODEL_FINISH_REASON = "MODEL_FINISH_REASON"
    # The model answered with no candidate, or with no text and no function calls.
    MODEL_EMPTY_RESPONSE = "MODEL_EMPTY_RESPONSE"
    MAX_STEPS_EXCEEDED = "MAX_STEPS_EXCEEDED"
    TOKEN_BUDGET_EXCEEDED = "TOKEN_BUDGET_EXCEEDED"
    RUN_TIMEOUT = "RUN_TIMEOUT"
    # The run waited in the admission queue longer than the queue timeout and never started (status TIMED_OUT).
    QUEUE_TIMEOUT = "QUEUE_TIMEOUT"
    CANCELLED = "CANCELLED"
    INTERRUPTED = "INTERRUPTED"
    INTERNAL = "INTERNAL"
    # Durable mode: a resumed run's workflow no longer replays its recorded execution (its agent, model or tools
    # changed between the crash and the resumption).
    DURABLE_REPLAY_DIVERGED = "DURABLE_REPLAY_DIVERGED"
    # Durable mode: every execution of the run ended its replica's process, and DBOS gave its workflow up (too many
    # recoveries); the run was ended by another replica (execution_service.durable.given_up).
    DURABLE_RECOVERY_EXHAUSTED = "DURABLE_RECOVERY_EXHAUSTED"
    # A sub-agent's child run that could not start (bad task or variables, depth limit, service full): stored FAILED
    # so the parent's ToolCallStarted.child_run_id names a run; the message says why.
    CHILD_NOT_STARTED = "CHILD_NOT_STARTED"
    # Tool-level reasons (ToolCallFinished.result_text carries the message).
    TOOL_ERROR = "TOOL_ERROR"
    TOOL_TIMEOUT = "TOOL_TIMEOUT"
    TOOL_SERVER_UNAVAILABLE = "TOOL_SERVER_UNAVAILABLE"
    TOOL_ARGUMENTS_INVALID = "TOOL_ARGUMENTS_INVALID"
    TOOL_NOT_FOUND = "TOOL_NOT_FOUND"


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Raw token counts as the provider reports them (see run.proto for the Gemini mapping)."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    thinking_tokens: int = 0
    tool_use_prompt_tokens: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            thinking_tokens=self.thinking_tokens + other.thinking_tokens,
            tool_use_prompt_tokens=self.tool_use_prompt_tokens + other.tool_use_prompt_tokens,
        )

    def counts(self) -> dict[str, int]:
        # Spelled out: dataclasses.asdict deep-copies and is ~10x slower, and this runs for every model call step.
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cached_tokens": self.cached_tokens,
            "thinking_tokens": self.thinking_tokens,
            "tool_use_prompt_tokens": self.tool_use_prompt_tokens,
        }


@dataclass(frozen=True, slots=True)
class Cost:
    amount: Decimal
    currency_code: str = "USD"
    price_table_version: str = ""


@dataclass(frozen=True, slots=True)
class RunError:
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class ModelAttempt:
    """One failed attempt of a model call. `code` is the provider's HTTP status (0: no answer came); `wait_before_next`
    is None after the last attempt of a call that failed the run."""

    attempt: int
    reason: str
    message: str
    start_time: datetime
    duration: timedelta
    code: int = 0
    status: str = ""
    wait_before_next: timedelta | None = None


@dataclass(frozen=True, slots=True)
class ModelCall:
    model: str
    usage: TokenUsage = TokenUsage()
    finish_reason: str = ""
    time_to_first_token: timedelta | None = None
    text: str = ""
    function_call_count: int = 0
    # The attempts that failed before the answer (all of them when the call failed the run).
    failed_attempts: tuple[ModelAttempt, ...] = ()
    # Thought summaries, only when the agent asked for them (thinkingConfig.includeThoughts).
    thoughts: str = ""
    # The model's input token limit (0: unknown) and the share of it the prompt used (0..1; 0 when unknown).
    input_token_limit: int = 0
    context_window_used: float = 0.0


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    call_id: str
    tool_name: str
    server: str
    arguments_json: str = "{}"
    # Set when the tool is a sub-agent: the child run this call started.
    child_run_id: str = ""


@dataclass(frozen=True, slots=True)
class ToolCallFinished:
    call_id: str
    tool_name: str
    result_text: str = ""
    result_json: str = ""
    is_error: bool = False
    duration: timedelta = timedelta(0)
    status: ToolCallStatus = ToolCallStatus.SUCCEEDED
    original_size_bytes: int = 0
    truncated: bool = False
    # Set when the tool is a sub-agent: the child run whose answer (or failure) this result is.
    child_run_id: str = ""


@dataclass(frozen=True, slots=True)
class FinalResponse:
    text: str


@dataclass(frozen=True, slots=True)
class SessionTurn:
    """One turn of a session's earlier run: its step `sequence`, or its task (sequence 0)."""

    run_id: str
    sequence: int = 0


@dataclass(frozen=True, slots=True)
class SessionHistory:
    """What history a run of a session loaded from the session's earlier runs and what it dropped (oldest turns
    first) to fit `token_limit`: the dropped turns are exactly the session's turns before `first_turn`."""

    session_id: str
    # The earlier runs whose turns the history holds, oldest first.
    run_ids: tuple[str, ...] = ()
    turn_count: int = 0
    # The oldest turn held; None when the history holds none.
    first_turn: SessionTurn | None = None
    dropped_turn_count: int = 0
    # Runs all of whose turns were dropped, oldest first.
    dropped_run_ids: tuple[str, ...] = ()
    # The token limit that dropped them; 0 when there is none.
    token_limit: int = 0
    # Tokens of the history as loaded.
    token_count: int = 0


@dataclass(frozen=True, slots=True)
class RunResumed:
    """Durable mode: the run resumed after the replica running it stopped. `gap`: from its last step before the stop
    (or its start) to the resumption; `replica` resumed it, `previous_replica` ran it before."""

    gap: timedelta = timedelta(0)
    replica: str = ""
    previous_replica: str = ""


StepPayload = ModelCall | ToolCallStarted | ToolCallFinished | FinalResponse | RunError | SessionHistory | RunResumed


class StepKind(enum.StrEnum):
    MODEL_CALL = "model_call"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    FINAL_RESPONSE = "final_response"
    ERROR = "error"
    SESSION_HISTORY = "session_history"
    RESUMED = "resumed"


def step_kind(payload: StepPayload) -> StepKind:
    match payload:
        case ModelCall():
            return StepKind.MODEL_CALL
        case ToolCallStarted():
            return StepKind.TOOL_CALL
        case ToolCallFinished():
            return StepKind.TOOL_RESULT
        case FinalResponse():
            return StepKind.FINAL_RESPONSE
        case RunError():
            return StepKind.ERROR
        case SessionHistory():
            return StepKind.SESSION_HISTORY
        case RunResumed():
            return StepKind.RESUMED
        case _:
            assert_never(payload)


@dataclass(frozen=True, slots=True)
class ExecutionStep:
    run_id: str
    sequence: int
    time: datetime
    payload: StepPayload
    duration: timedelta = timedelta(0)
    # 0 for the run's own steps; 1 for a child run's step carried in its parent's stream, 2 for a grandchild's...
    # A stored run holds only its own steps (depth 0).
    depth: int = 0

    @property
    def kind(self) -> StepKind:
        return step_kind(self.payload)


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    """Summary of one tool call of a run (the tool_calls table)."""

    id: str
    name: str
    server: str
    parameters_json: str
    result: str
    duration: timedelta
    status: ToolCallStatus
    start_time: datetime
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class ForkOrigin:
    """The run a fork came from, and the last of its steps the fork replayed."""

    run_id: str
    sequence: int


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    agent_name: str
    status: RunStatus
    start_time: datetime
    agent_version: str = ""
    user: str = ""
    task: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)
    error: RunError | None = None
    final_response: str = ""
    model_name: str = ""
    end_time: datetime | None = None
    duration: timedelta | None = None
    token_usage: TokenUsage = TokenUsage()
    cost: Cost | None = None
    steps_taken: int = 0
    tools_used: tuple[str, ...] = ()
    trace_id: str = ""
    execution_steps: tuple[ExecutionStep, ...] = ()
    tool_calls: tuple[ToolCallRecord, ...] = ()
    # Composition (docs/agents.md). A child run (sub-agent) names its parent, the tool call that started it and
    # the top-level run of its tree; all three are empty and depth is 0 for a top-level run.
    parent_run_id: str = ""
    root_run_id: str = ""
    parent_tool_call_id: str = ""
    depth: int = 0
    # The session (conversation) the run belongs to; a child run carries its parent's.
    session_id: str = ""
    forked_from: ForkOrigin | None = None
    # token_usage and cost are the run's own model calls only; these add its descendants', each counted once.
    # None when the run has no children.
    token_usage_with_descendants: TokenUsage | None = None
    cost_with_descendants: Cost | None = None
    # The largest ModelCall.context_window_used of the run (0..1).
    max_context_window_used: float = 0.0
    # How long the run waited in the admission queue before start_time (None: it started at once).
    queue_duration: timedelta | None = None
    # How many tool calls the run made, when tool_calls is left out (the BASIC view keeps their number here); 0
    # beside the tool calls themselves (one truth: tool_calls_made reads whichever is there).
    tool_call_count: int = 0

    @property
    def tool_calls_made(self) -> int:
        """The number of tool calls: the records' when present (FULL view), else the stored count."""
        return len(self.tool_calls) if self.tool_calls else self.tool_call_count

    def basic(self) -> Run:
        """The run without steps and tool calls (the BASIC view); it keeps their number."""
        return dataclasses.replace(self, execution_steps=(), tool_calls=(), tool_call_count=self.tool_calls_made)


def tool_calls_from_steps(steps: tuple[ExecutionStep, ...] | list[ExecutionStep]) -> tuple[ToolCallRecord, ...]:
    """Builds the per-run tool call summaries from ToolCallStarted/ToolCallFinished steps."""
    started: dict[str, tuple[ExecutionStep, ToolCallStarted]] = {}
    records: dict[str, ToolCallRecord] = {}
    for step in steps:
        payload = step.payload
        if isinstance(payload, ToolCallStarted):
            started[payload.call_id] = (step, payload)
            records[payload.call_id] = ToolCallRecord(
                id=payload.call_id,
                name=payload.tool_name,
                server=payload.server,
                parameters_json=payload.arguments_json,
                result="",
                duration=timedelta(0),
                status=ToolCallStatus.RUNNING,
                start_time=step.time,
            )
        elif isinstance(payload, ToolCallFinished) and payload.call_id in started:
            records[payload.call_id] = dataclasses.replace(
                records[payload.call_id],
                result=payload.result_text,
                duration=payload.duration,
                status=payload.status,
                is_error=payload.is_error,
            )
    return tuple(records.values())


def as_jsonable(value: Any) -> Any:
    """Dataclasses, enums, datetimes, timedeltas and Decimals as JSON-ready values (used for hashing/logging)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: as_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        out["__type__"] = type(value).__name__
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return round(value.total_seconds() * 1_000_000)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): as_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_jsonable(v) for v in value]
    return value
