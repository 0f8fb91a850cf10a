"""One turn of the agent loop (ADK's one step): one model call and the tool calls it asks for.

`run_turn` records every step of the turn (the model call, failed or not; each tool call's start and result; the
final answer) and returns what the loop does next: a `LoopOutcome` when the turn ended the run, else `NextTurn` with
the messages the turn added to the conversation.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

from agentrun_core.domain import RunStatus
from execution_service.agents.spec import AgentSpec
from execution_service.engine.call_ids import RunCallIds
from execution_service.engine.instrumentation import RunTelemetry
from execution_service.engine.outcomes import (
    LoopOutcome,
    after_model_turn,
    max_steps_exceeded,
    model_failed,
    over_token_budget,
)
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
)
from execution_service.tools.base import ResolvedTool, ToolProvider

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NextTurn:
    """The turn's function calls ran: the conversation goes on with these messages (the model's turn, the results)."""

    messages: tuple[Message, ...]


TurnResult = LoopOutcome | NextTurn


@dataclass(frozen=True, slots=True)
class Turns:
    """What every turn of one run uses: the agent, its model and tools, the providers, the run's recorder."""

    agent: AgentSpec
    model: str
    system_instruction: str | None
    tools: dict[str, ResolvedTool]
    declarations: tuple[ToolDeclaration, ...]
    provider: ModelProvider
    tool_provider: ToolProvider
    recorder: StepRecorder
    telemetry: RunTelemetry
    max_parallel_tools: int
    call_ids: RunCallIds = field(default_factory=RunCallIds)

    async def run_turn(self, messages: tuple[Message, ...], *, last: bool) -> TurnResult:
        """The model's answer to `messages`, and the tool calls it asks for unless this is the `last` turn the
        limits allow (then the run ends with MAX_STEPS_EXCEEDED)."""
        response = await self.call_model(messages)
        if isinstance(response, LoopOutcome):
            return response
        ended = after_model_turn(response, self.recorder.tree.budget_exceeded(self.agent.limits.token_budget))
        if ended is not None:
            if ended.status is RunStatus.COMPLETED:
                self.recorder.final_response(ended.final_response)
            return ended
        if last:
            return max_steps_exceeded(self.agent.limits.max_steps)
        results = await run_tool_calls(
            response.function_calls,
            self.tools,
            self.tool_provider,
            self.recorder,
            timeout_s=self.agent.limits.tool_timeout_s,
            max_parallel=self.max_parallel_tools,
            result_bytes=self.agent.limits.tool_result_bytes,
            telemetry=self.telemetry,
        )
        # Sub-agents' tokens count against this run's budget: a child may have crossed it.
        over = over_token_budget(self.recorder.tree.budget_exceeded(self.agent.limits.token_budget))
        if over is not None:
            return over
        return NextTurn(self.call_ids.as_given(response.as_message(), ToolResultMessage(results)))

    async def call_model(self, messages: tuple[Message, ...]) -> ModelResponse | LoopOutcome:
        """One model call (retries included), recorded as a step whether it answered or failed the run."""
        request = ModelRequest(
            model=self.model,
            messages=messages,
            system_instruction=self.system_instruction,
            tools=self.declarations,
            config=self.agent.config,
        )
        started, clock = utc_now(), time.perf_counter()
        with self.telemetry.model_call(self.model) as span:
            try:
                response = await self.provider.generate(request)
            except ModelError as exc:
                span.failed(str(exc.reason))
                log.warning(
                    "model call failed",
                    extra={"run_id": self.recorder.run_id, "reason": str(exc.reason), "code": exc.code},
                )
                took = timedelta(seconds=time.perf_counter() - clock)
                self.recorder.failed_model_call(self.model, exc, started=started, duration=took)
                await self.recorder.let_watchers_run()
                return model_failed(exc)
            span.succeeded(response)
        response = self.call_ids.recorded(response)
        self.recorder.model_call(response, started=started, duration=timedelta(seconds=time.perf_counter() - clock))
        await self.recorder.let_watchers_run()
        return response
