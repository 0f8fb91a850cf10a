"""What the agent loop needs from tools: resolve an agent's tool patterns, and call a tool without raising."""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import MISSING, dataclass, fields
from typing import Any, Protocol, runtime_checkable

from agentrun_core.domain import ErrorReason, ToolCallStatus
from execution_service.model.base import InlineMedia

# The id of the tool call (FunctionCall.id) a ToolProvider.call is made for, set by the engine around each call: a
# provider wrapping another (execution_service.history.replay) can answer a call from its record by id.
current_tool_call_id: ContextVar[str] = ContextVar("current_tool_call_id", default="")


@dataclass(frozen=True, slots=True)
class ResolvedTool:
    """A tool an agent may call. `exposed_name` is what the model sees (unique within the agent)."""

    server: str
    name: str
    exposed_name: str
    description: str
    input_schema: dict[str, Any]
    # A sub-agent (execution_service.tools.sub_agents): each call starts a child run, whose id the call's steps carry.
    starts_run: bool = False


@dataclass(frozen=True, slots=True)
class ToolCallContext:
    """Which call of the run a tool call is: the model's call id, and for a tool that `starts_run`, the id of the
    child run it starts (chosen before the call's start is recorded, so the ToolCallStarted step names it)."""

    call_id: str
    child_run_id: str = ""


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """How a tool call ended. Tool failures are data (is_error=True), never exceptions."""

    text: str
    structured_json: str = ""
    is_error: bool = False
    status: ToolCallStatus = ToolCallStatus.SUCCEEDED
    error_reason: ErrorReason | None = None
    # Images, audio and documents the model can read (tools.results); `text` summarises each of them too.
    media: tuple[InlineMedia, ...] = ()

    def __setstate__(self, state: Sequence[Any]) -> None:
        """Unpickles an outcome a durable run checkpointed, also one of a version without the later fields."""
        for index, name in enumerate(_OUTCOME_FIELDS):
            value = state[index] if index < len(state) else _OUTCOME_DEFAULTS[name]
            object.__setattr__(self, name, value)

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _OUTCOME_FIELDS)


_OUTCOME_FIELDS = tuple(f.name for f in fields(ToolOutcome))
_OUTCOME_DEFAULTS = {f.name: f.default for f in fields(ToolOutcome) if f.default is not MISSING}


class ToolResolutionError(Exception):
    """An agent's tool pattern names an unknown server or tool, or the server is not reachable (`unavailable`: at
    least one server could not be reached, a passing condition; otherwise the agent's configuration is wrong)."""

    def __init__(self, message: str, *, unavailable: bool = False) -> None:
        super().__init__(message)
        self.unavailable = unavailable


class ToolProvider(Protocol):
    async def resolve(self, patterns: list[str]) -> list[ResolvedTool]:
        """Tools matching `server/tool` or `server/*` patterns. Raises ToolResolutionError."""
        ...

    async def call(
        self, tool: ResolvedTool, arguments: dict[str, Any], timeout_s: float, context: ToolCallContext | None = None
    ) -> ToolOutcome:
        """Calls the tool. Never raises for tool, server or timeout failures: returns an error outcome.
        Cancelling the calling task cancels the in-flight call. `context`: which call of the run this is (a tool
        that `starts_run` needs it)."""
        ...


@runtime_checkable
class ReplaysChildRuns(Protocol):
    """A tool provider that chooses the child run id of some sub-agent calls: a fork's (history.replay) names the
    original's child run for a call it answers from the record; the durable mode's (durable.children) derives the id
    from the run and the call's checkpointed step, so a resumed run names the same child."""

    def replayed_child_run_id(self, call_id: str) -> str:
        """The child run call `call_id` names, or "" for a new run id."""
        ...
