"""A scripted ModelProvider and an in-memory ToolProvider that drive the agent loop without gRPC, MCP or HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentrun_core.domain import ErrorReason, ExecutionStep, TokenUsage, ToolCallStatus
from execution_service.agents.spec import AgentLimits, AgentSpec, RenderedPrompt
from execution_service.engine.control import RunControl
from execution_service.engine.loop import LoopInput, run_agent_loop
from execution_service.engine.outcomes import LoopOutcome
from execution_service.engine.step_recorder import StepRecorder
from execution_service.model.base import FunctionCall, ModelError, ModelRequest, ModelResponse
from execution_service.redaction import Redactor
from execution_service.tools.base import ResolvedTool, ToolCallContext, ToolOutcome, ToolResolutionError

MODEL = "scripted-model"


def answer(
    text: str = "", *calls: FunctionCall, finish: str = "STOP", tokens: int = 10, **fields: Any
) -> ModelResponse:
    """A model turn: text and/or function calls, `tokens` prompt tokens and as many output tokens."""
    usage = TokenUsage(input_tokens=tokens, output_tokens=tokens, total_tokens=2 * tokens)
    return ModelResponse(model=MODEL, text=text, function_calls=calls, usage=usage, finish_reason=finish, **fields)


def call(name: str, call_id: str = "", **arguments: Any) -> FunctionCall:
    return FunctionCall(id=call_id or f"call-{name}", name=name, arguments=arguments)


ModelTurn = ModelResponse | ModelError | Callable[[ModelRequest], Awaitable[ModelResponse]]


class ScriptedModel:
    """Answers each request with the next scripted turn (a response, an error to raise, or a coroutine function)."""

    name = "scripted"

    def __init__(self, *turns: ModelTurn) -> None:
        self.turns = list(turns)
        self.requests: list[ModelRequest] = []

    async def generate(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        if not self.turns:
            raise AssertionError(f"no scripted turn left for request {len(self.requests)}")
        turn = self.turns.pop(0)
        if isinstance(turn, ModelError):
            raise turn
        if isinstance(turn, ModelResponse):
            return turn
        return await turn(request)


ToolBehaviour = ToolOutcome | Callable[[dict[str, Any], float], Awaitable[ToolOutcome]]


@dataclass
class FakeTools:
    """A ToolProvider with tools of one server, "fake", each answering with a fixed outcome or a coroutine."""

    behaviours: dict[str, ToolBehaviour] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any], float]] = field(default_factory=list)

    def resolved(self) -> tuple[ResolvedTool, ...]:
        return tuple(
            ResolvedTool(server="fake", name=name, exposed_name=name, description=f"the {name} tool", input_schema={})
            for name in self.behaviours
        )

    async def resolve(self, patterns: list[str]) -> list[ResolvedTool]:
        unknown = [p for p in patterns if p.removeprefix("fake/") not in self.behaviours and p != "fake/*"]
        if unknown:
            raise ToolResolutionError(f"unknown tools {unknown}")
        return list(self.resolved())

    async def call(
        self, tool: ResolvedTool, arguments: dict[str, Any], timeout_s: float, context: ToolCallContext | None = None
    ) -> ToolOutcome:
        self.calls.append((tool.name, arguments, timeout_s))
        behaviour = self.behaviours[tool.name]
        if isinstance(behaviour, ToolOutcome):
            return behaviour
        return await behaviour(arguments, timeout_s)


def ok(text: str) -> ToolOutcome:
    return ToolOutcome(text=text)


def tool_error(text: str) -> ToolOutcome:
    return ToolOutcome(text=text, is_error=True, status=ToolCallStatus.FAILED, error_reason=ErrorReason.TOOL_ERROR)


def agent(limits: AgentLimits | None = None, config: dict[str, Any] | None = None) -> AgentSpec:
    return AgentSpec(
        name="unit",
        path=Path("unit.prompt"),
        version="sha256:unit",
        model=MODEL,
        description="",
        tools=("fake/*",),
        limits=limits or AgentLimits(),
        config=config or {},
    )


@dataclass
class LoopRun:
    outcome: LoopOutcome
    steps: list[ExecutionStep]
    recorder: StepRecorder


async def run_loop(
    model: ScriptedModel,
    tools: FakeTools | None = None,
    *,
    limits: AgentLimits | None = None,
    config: dict[str, Any] | None = None,
    control: RunControl | None = None,
    redactor: Redactor | None = None,
) -> LoopRun:
    tools = tools or FakeTools()
    steps: list[ExecutionStep] = []
    recorder = StepRecorder("run-1", steps.append, redactor or Redactor())
    loop_input = LoopInput(
        agent=agent(limits, config),
        prompt=RenderedPrompt(system_instruction="You are a unit test.", user_text="the task"),
        model=MODEL,
        tools=tools.resolved(),
    )
    outcome = await run_agent_loop(loop_input, model, tools, recorder, control or RunControl())
    return LoopRun(outcome, steps, recorder)


async def never_answers(arguments: dict[str, Any], timeout_s: float) -> ToolOutcome:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")
