"""Sub-agents as tools: an agent whose `tools:` name `agents/NAME` may call agent NAME like any other tool.

The model sees one function per sub-agent, named after the agent, described by the agent's description, taking the
sub-agent's task and its variables (its input schema). Calling it starts a child run of that agent (through the
`ChildRunner` the engine gives, engine.child_runs) and returns the child's final response; a child that did not
complete is a tool error the model reads, never a failed parent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agentrun_core.domain import ErrorReason, RunError, RunStatus, ToolCallStatus
from execution_service.agents.spec import AgentSpec
from execution_service.tools.base import ResolvedTool, ToolCallContext, ToolOutcome, ToolResolutionError

# ResolvedTool.server of a sub-agent (and ToolCallStarted.server of its calls): the prefix of `agents/NAME`.
SUB_AGENT_SERVER = "agents"
TASK_ARGUMENT = "task"
_TASK_DESCRIPTION = (
    "The task for this agent, complete and self-contained: it sees nothing of this conversation but this text "
    "(and the other arguments)."
)


@dataclass(frozen=True, slots=True)
class ChildResult:
    """How a child run ended."""

    run_id: str
    status: RunStatus
    final_response: str = ""
    error: RunError | None = None


class ChildRunner(Protocol):
    async def run_child(
        self, agent: str, task: str, variables: dict[str, str], context: ToolCallContext
    ) -> ChildResult | str:
        """Runs a child run of `agent` to its end (the run id is `context.child_run_id`); a string says why it could
        not start (the runner then stored the reserved run id as a FAILED run saying so). Cancelling the caller
        cancels the child."""
        ...

    async def not_started(
        self, agent: str, task: str, variables: dict[str, str], context: ToolCallContext, problem: str
    ) -> None:
        """A call that starts no child (`problem` says why): its reserved run id (`context.child_run_id`) is stored
        as a FAILED run of `agent` saying so, so the id the call's steps name resolves."""
        ...


def tool_schema(agent: AgentSpec) -> dict[str, Any]:
    """The function parameters the model fills: the task, then the agent's variables (as its input schema says)."""
    variables: dict[str, Any] = dict(agent.input_schema.get("properties", {}))
    return {
        "type": "object",
        "properties": {TASK_ARGUMENT: {"type": "string", "description": _TASK_DESCRIPTION}, **variables},
        "required": [TASK_ARGUMENT, *agent.input_schema.get("required", [])],
    }


def tool_description(agent: AgentSpec) -> str:
    what = agent.description or f"the agent {agent.name!r}"
    return f"Sub-agent: {what} Give it a task; it works on its own and answers with its final response."


class SubAgentTools:
    """Resolves sub-agent names to tools and calls them through a ChildRunner."""

    def __init__(self, agents: Callable[[str], AgentSpec | None], runner: ChildRunner) -> None:
        self._agents = agents
        self._runner = runner

    def resolve(self, names: list[str]) -> list[ResolvedTool]:
        """One tool per agent name (exposed under the agent's name). Raises ToolResolutionError for an agent that
        is not loaded (deleted or broken since the calling agent was loaded)."""
        tools: list[ResolvedTool] = []
        missing: list[str] = []
        for name in names:
            agent = self._agents(name)
            if agent is None:
                missing.append(name)
                continue
            tools.append(
                ResolvedTool(
                    server=SUB_AGENT_SERVER,
                    name=name,
                    exposed_name=name,
                    description=tool_description(agent),
                    input_schema=tool_schema(agent),
                    starts_run=True,
                )
            )
        if missing:
            named = ", ".join(f"agents/{name}" for name in missing)
            raise ToolResolutionError(f"sub-agents not loaded (missing, or their files are broken): {named}")
        return tools

    async def call(self, tool: ResolvedTool, arguments: dict[str, Any], context: ToolCallContext) -> ToolOutcome:
        task = arguments.get(TASK_ARGUMENT)
        # A null (an optional variable the model filled with nothing) is a variable not given.
        variables = {
            name: _as_text(value) for name, value in arguments.items() if name != TASK_ARGUMENT and value is not None
        }
        if not isinstance(task, str) or not task.strip():
            problem = "'task' must be a non-empty string (the task for the sub-agent)"
            await self._runner.not_started(tool.name, "", variables, context, problem)
            return _failed(
                f"Invalid arguments for tool {tool.exposed_name!r}: {problem}", ErrorReason.TOOL_ARGUMENTS_INVALID
            )
        result = await self._runner.run_child(tool.name, task, variables, context)
        if isinstance(result, str):
            return _failed(f"sub-agent {tool.name!r} did not start: {result}", ErrorReason.TOOL_ERROR)
        return outcome_of_child(tool.name, result)


def outcome_of_child(agent: str, result: ChildResult) -> ToolOutcome:
    """The child's final response; anything but COMPLETED is an error result saying how the child ended."""
    if result.status is RunStatus.COMPLETED:
        return ToolOutcome(text=result.final_response)
    why = f" ({result.error.reason}: {result.error.message})" if result.error is not None else ""
    text = f"sub-agent {agent!r} (run {result.run_id}) ended {result.status.value}{why}"
    if result.final_response:
        text += f"; what it answered before it ended: {result.final_response}"
    status = {
        RunStatus.TIMED_OUT: ToolCallStatus.TIMED_OUT,
        RunStatus.CANCELLED: ToolCallStatus.CANCELLED,
    }.get(result.status, ToolCallStatus.FAILED)
    return ToolOutcome(text=text, is_error=True, status=status, error_reason=ErrorReason.TOOL_ERROR)


def _as_text(value: Any) -> str:
    """A variable as ExecuteAgent would receive it: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _failed(text: str, reason: ErrorReason) -> ToolOutcome:
    return ToolOutcome(text=text, is_error=True, status=ToolCallStatus.FAILED, error_reason=reason)
