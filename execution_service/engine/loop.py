"""The agent loop: a short sequence of turns (execution_service.engine.turn), until one ends the run.

Each way a turn can end the run is its own small function (execution_service.engine.outcomes). Run timeouts and
immediate cancellation are applied around this loop by the run manager (RunManager._execute in
execution_service.engine.manager).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from execution_service.agents.spec import AgentSpec, RenderedPrompt
from execution_service.engine.control import RunControl
from execution_service.engine.instrumentation import RunTelemetry
from execution_service.engine.outcomes import LoopOutcome, cancelled_after_turn, max_steps_exceeded
from execution_service.engine.step_recorder import StepRecorder
from execution_service.engine.turn import Turns
from execution_service.model.base import Message, ModelProvider, ToolDeclaration, UserMessage, without_media
from execution_service.tools.base import ResolvedTool, ToolProvider

__all__ = ["LoopInput", "LoopOutcome", "run_agent_loop"]


@dataclass(frozen=True, slots=True)
class LoopInput:
    agent: AgentSpec
    prompt: RenderedPrompt
    model: str
    tools: tuple[ResolvedTool, ...]
    max_parallel_tools: int = 8
    # Spans and metrics of this run's model and tool calls (execution_service.engine.instrumentation).
    telemetry: RunTelemetry = field(default_factory=RunTelemetry.noop)
    # Messages before the prompt: a session's earlier turns (execution_service.engine.composition).
    history: tuple[Message, ...] = ()


async def run_agent_loop(
    inp: LoopInput,
    provider: ModelProvider,
    tool_provider: ToolProvider,
    recorder: StepRecorder,
    control: RunControl,
) -> LoopOutcome:
    """Runs the agent until it answers or a limit ends it."""
    turns = Turns(
        agent=inp.agent,
        model=inp.model,
        system_instruction=inp.prompt.system_instruction,
        tools={t.exposed_name: t for t in inp.tools},
        declarations=tuple(ToolDeclaration(t.exposed_name, t.description, t.input_schema) for t in inp.tools),
        provider=provider,
        tool_provider=tool_provider,
        recorder=recorder,
        telemetry=inp.telemetry,
        max_parallel_tools=inp.max_parallel_tools,
    )
    messages: tuple[Message, ...] = (*inp.history, UserMessage(inp.prompt.user_text))
    max_steps = inp.agent.limits.max_steps
    for turn in range(1, max_steps + 1):
        if control.stop_after_turn:
            return cancelled_after_turn()
        result = await turns.run_turn(messages, last=turn == max_steps)
        if isinstance(result, LoopOutcome):
            return result
        messages = (*without_media(messages), *result.messages)  # earlier turns' media go no further (memory)
    return max_steps_exceeded(max_steps)  # only when max_steps < 1, which agent files cannot ask for
