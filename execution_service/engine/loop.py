"""The agent loop: one model call per step, the tool calls it asks for, until a final answer or a limit.

Each outcome of a turn is its own small function; the loop itself only sequences them. Run timeouts and
immediate cancellation are applied around this loop by the run manager (RunManager._execute in
execution_service.engine.manager).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from agentrun_core.domain import ErrorReason, RunError, RunStatus
from execution_service.agents.spec import AgentSpec, RenderedPrompt
from execution_service.engine.control import RunControl
from execution_service.engine.instrumentation import RunTelemetry
from execution_service.engine.step_recorder import StepRecorder, utc_now
from execution_service.engine.tool_calls import run_tool_calls
from execution_service.model.base import (
    Message,
    ModelError,
    ModelProvider,
    ModelRequest,
    ModelResponse,
    ToolDeclaration,
    ToolResultMessage,
    UserMessage,
)
from execution_service.tools.base import ResolvedTool, ToolProvider

log = logging.getLogger(__name__)

# Finish reasons (google.genai.types.FinishReason) that mean the provider withheld or refused the answer.
_BLOCKED_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "LANGUAGE",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
        "ESCALATION",
    }
)
# Finish reasons of a turn that may be the final answer (absent or unspecified too); it still needs text.
_ANSWER_FINISH_REASONS = frozenset({"STOP", "", "FINISH_REASON_UNSPECIFIED"})


@dataclass(frozen=True, slots=True)
class LoopOutcome:
    status: RunStatus
    final_response: str = ""
    error: RunError | None = None

    @classmethod
    def failed(cls, reason: ErrorReason | str, message: str) -> LoopOutcome:
        return cls(RunStatus.FAILED, error=RunError(reason=str(reason), message=message))


@dataclass(frozen=True, slots=True)
class LoopInput:
    agent: AgentSpec
    prompt: RenderedPrompt
    model: str
    tools: tuple[ResolvedTool, ...]
    max_parallel_tools: int = 8
    # Spans and metrics of this run's model and tool calls (execution_service.engine.instrumentation).
    telemetry: RunTelemetry = field(default_factory=RunTelemetry.noop)


async def run_agent_loop(
    inp: LoopInput,
    provider: ModelProvider,
    tool_provider: ToolProvider,
    recorder: StepRecorder,
    control: RunControl,
    after_turn: Callable[[], Awaitable[None]] | None = None,
) -> LoopOutcome:
    """Runs the agent until it answers or a limit ends it. `after_turn` runs after each turn's tool calls."""
    limits = inp.agent.limits
    tools_by_name = {t.exposed_name: t for t in inp.tools}
    declarations = tuple(ToolDeclaration(t.exposed_name, t.description, t.input_schema) for t in inp.tools)
    messages: list[Message] = [UserMessage(inp.prompt.user_text)]
    for turn in range(1, limits.max_steps + 1):
        if control.stop_after_turn:
            return LoopOutcome(
                RunStatus.CANCELLED, error=RunError(ErrorReason.CANCELLED, "cancelled after the current turn")
            )
        request = ModelRequest(
            model=inp.model,
            messages=tuple(messages),
            system_instruction=inp.prompt.system_instruction,
            tools=declarations,
            config=inp.agent.config,
        )
        started, clock = utc_now(), time.perf_counter()
        with inp.telemetry.model_call(inp.model) as model_call:
            try:
                response = await provider.generate(request)
            except ModelError as exc:
                model_call.failed(str(exc.reason))
                log.warning(
                    "model call failed", extra={"run_id": recorder.run_id, "reason": str(exc.reason), "code": exc.code}
                )
                return LoopOutcome.failed(exc.reason, exc.describe())
            model_call.succeeded(response)
        recorder.model_call(response, started=started, duration=timedelta(seconds=time.perf_counter() - clock))
        await recorder.let_watchers_run()

        ended = _turn_outcome(response, recorder, limits.token_budget)
        if ended is not None:
            return ended
        if turn == limits.max_steps:
            break
        messages.append(response.as_message())
        results = await run_tool_calls(
            response.function_calls,
            tools_by_name,
            tool_provider,
            recorder,
            timeout_s=limits.tool_timeout_s,
            max_parallel=inp.max_parallel_tools,
            telemetry=inp.telemetry,
        )
        messages.append(ToolResultMessage(results))
        if after_turn is not None:
            await after_turn()
    return LoopOutcome.failed(
        ErrorReason.MAX_STEPS_EXCEEDED,
        f"the agent made {limits.max_steps} model calls (limits.max_steps) without giving a final answer",
    )


def _turn_outcome(response: ModelResponse, recorder: StepRecorder, token_budget: int) -> LoopOutcome | None:
    """How the run ends after this model turn, or None when the loop goes on with the turn's tool calls."""
    if response.blocked_reason:
        return LoopOutcome.failed(
            ErrorReason.PROMPT_BLOCKED,
            f"the model provider blocked the prompt: {response.blocked_reason}{_provider_says(response)}",
        )
    if token_budget and recorder.usage.total_tokens > token_budget:
        return LoopOutcome.failed(
            ErrorReason.TOKEN_BUDGET_EXCEEDED,
            f"the run used {recorder.usage.total_tokens} tokens, over its budget of {token_budget} "
            "(limits.token_budget)",
        )
    if response.function_calls:
        return None
    reason = response.finish_reason
    if reason == "MAX_TOKENS":
        return LoopOutcome.failed(
            ErrorReason.MAX_TOKENS,
            "the model stopped at its output token limit (config.maxOutputTokens) before finishing its answer"
            + _provider_says(response),
        )
    if reason in _BLOCKED_FINISH_REASONS:
        return LoopOutcome.failed(
            ErrorReason.RESPONSE_BLOCKED,
            f"the model provider withheld the answer (finish reason {reason}){_provider_says(response)}",
        )
    if reason not in _ANSWER_FINISH_REASONS:
        return LoopOutcome.failed(
            ErrorReason.MODEL_FINISH_REASON,
            f"the model ended its turn with finish reason {reason} and no function calls{_provider_says(response)}",
        )
    if not response.text.strip():
        if response.no_candidates:
            what = "no candidate at all (and no reason for blocking the prompt)"
        else:
            what = f"no text and no function calls (finish reason {reason or 'absent'})"
        return LoopOutcome.failed(
            ErrorReason.MODEL_EMPTY_RESPONSE, f"the model answered with {what}{_provider_says(response)}"
        )
    recorder.final_response(response.text)
    return LoopOutcome(RunStatus.COMPLETED, final_response=response.text)


def _provider_says(response: ModelResponse) -> str:
    return f"; the provider said: {response.finish_message}" if response.finish_message else ""
