"""Turns what happens in a run into numbered ExecutionSteps, emits each one at once, and keeps the totals.

Everything streamed and everything stored goes through here, so both always hold the same, redacted steps. Each
recorder has the run's SecretMemory: a secret value redacted from one step is also scrubbed from every later step
(and the final response and error) that repeats it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from agentrun_core.domain import (
    ExecutionStep,
    FinalResponse,
    ModelAttempt,
    ModelCall,
    RunError,
    StepPayload,
    TokenUsage,
    ToolCallFinished,
    ToolCallStarted,
)
from agentrun_core.well_formed import well_formed
from execution_service.engine.run_tree import RunNode
from execution_service.model.base import ModelError, ModelResponse
from execution_service.redaction import Redactor, SecretMemory
from execution_service.redaction.redactor import SCRUB_MARGIN_CHARS
from execution_service.tools.base import ResolvedTool, ToolOutcome


def utc_now() -> datetime:
    return datetime.now(UTC)


def context_window_share(prompt_tokens: int, input_token_limit: int) -> float:
    """prompt tokens / input token limit, 0..1 (0 when the limit is unknown; a prompt over the limit counts as 1)."""
    if input_token_limit <= 0 or prompt_tokens <= 0:
        return 0.0
    return min(1.0, prompt_tokens / input_token_limit)


def storable(text: str) -> str:
    """Text as it can be stored anywhere: NUL (which PostgreSQL rejects) and lone surrogates (which UTF-8 cannot
    encode: agentrun_core.well_formed) become U+FFFD."""
    return well_formed(text.replace("\x00", "\ufffd") if "\x00" in text else text)


class StepRecorder:
    def __init__(
        self,
        run_id: str,
        emit: Callable[[ExecutionStep], None],
        redactor: Redactor,
        handed_off: Callable[[], Awaitable[None]] | None = None,
        tree: RunNode | None = None,
    ) -> None:
        """`emit` publishes a step to the run's watchers; `handed_off` waits until they passed it on (LiveRun);
        `tree`: the run's place in its tree of sub-agent runs (default: a top-level run)."""
        self.run_id = run_id
        self.tree = tree or RunNode(run_id, agent="", token_budget=0, max_depth=0)
        self._emit = emit
        self._handed_off = handed_off
        self._redactor = redactor
        self._secrets = redactor.new_memory()
        self.steps: list[ExecutionStep] = []
        self.usage = TokenUsage()
        self.model_calls = 0
        self.tool_calls = 0
        self._tools_used: dict[str, None] = {}
        # The largest share of its model's input token limit a prompt of this run used (0..1).
        self.max_context_window_used = 0.0

    @property
    def secret_memory(self) -> SecretMemory:
        """The secret values this run's redaction removed so far (scrubbed wherever they appear later)."""
        return self._secrets

    @property
    def tools_used(self) -> tuple[str, ...]:
        return tuple(self._tools_used)

    def record(self, payload: StepPayload, *, time: datetime, duration: timedelta = timedelta(0)) -> ExecutionStep:
        step = ExecutionStep(
            run_id=self.run_id, sequence=len(self.steps) + 1, time=time, duration=duration, payload=payload
        )
        self.steps.append(step)
        self._emit(step)
        return step

    async def let_watchers_run(self) -> None:
        """Waits (briefly, see LiveRun.handed_off) until the streams following this run have sent the steps just
        recorded, so their sends do not queue behind the run's next piece of work (MCP requests, outbox writes)."""
        if self._handed_off is not None:
            await self._handed_off()

    def model_call(self, response: ModelResponse, *, started: datetime, duration: timedelta) -> None:
        """A model call that answered (after the failed attempts it lists, if any)."""
        self.model_calls += 1
        self.usage = self.usage + response.usage
        self.tree.add_usage(response.usage)
        limit = response.input_token_limit
        used = context_window_share(response.usage.input_tokens, limit)
        self.max_context_window_used = max(self.max_context_window_used, used)
        self.record(
            ModelCall(
                model=response.model,
                usage=response.usage,
                finish_reason=response.finish_reason,
                time_to_first_token=response.time_to_first_token,
                text=self._scrub(response.text),
                function_call_count=len(response.function_calls),
                failed_attempts=self._scrub_attempts(response.failed_attempts),
                thoughts=self._scrub(response.thoughts),
                input_token_limit=limit,
                context_window_used=used,
            ),
            time=started,
            duration=duration,
        )

    def failed_model_call(self, model: str, error: ModelError, *, started: datetime, duration: timedelta) -> None:
        """A model call that failed the run: every attempt it made (the retry layer's, else this one error)."""
        self.model_calls += 1
        attempts = error.attempts or (
            ModelAttempt(
                attempt=1,
                reason=str(error.reason),
                message=error.message,
                start_time=started,
                duration=duration,
                code=error.code or 0,
                status=error.status,
            ),
        )
        self.record(
            ModelCall(model=model, failed_attempts=self._scrub_attempts(attempts)), time=started, duration=duration
        )

    def _scrub(self, text: str) -> str:
        return storable(self._redactor.scrub_text(text, self._secrets)) if text else text

    def _scrub_attempts(self, attempts: tuple[ModelAttempt, ...]) -> tuple[ModelAttempt, ...]:
        return tuple(dataclasses.replace(a, message=self._scrub(a.message)) for a in attempts)

    def tool_started(
        self, call_id: str, tool: ResolvedTool, arguments: dict[str, Any], *, time: datetime, child_run_id: str = ""
    ) -> None:
        self.tool_calls += 1
        self._tools_used.setdefault(tool.name, None)
        scrubbed = self._redactor.scrub_value(arguments, self._secrets)
        self.record(
            ToolCallStarted(
                call_id=call_id,
                tool_name=tool.name,
                server=tool.server,
                arguments_json=storable(orjson.dumps(scrubbed).decode()),
                child_run_id=child_run_id,
            ),
            time=time,
        )

    def tool_finished(
        self,
        call_id: str,
        tool_name: str,
        outcome: ToolOutcome,
        *,
        time: datetime,
        duration: timedelta,
        size_bytes: int | None = None,
        model_bytes: int = 0,
        child_run_id: str = "",
    ) -> None:
        """`size_bytes`: the UTF-8 size of the result as the tool returned it (computed when not given);
        `model_bytes`: how much of it the model receives, whose secrets must be remembered too."""
        rules = self._redactor.rules
        size = len(outcome.text.encode()) if size_bytes is None else size_bytes
        # Only what is stored or sent to the model is scrubbed (with a margin, so a secret straddling the cut is
        # still recognised): redacting a 20 MB result whole costs seconds and hundreds of MB for nothing kept.
        keep = max(rules.max_result_bytes, model_bytes) + SCRUB_MARGIN_CHARS
        text = outcome.text if len(outcome.text) <= keep else outcome.text[:keep]
        structured = outcome.structured_json
        if len(structured) > rules.max_result_bytes and len(structured.encode()) > rules.max_result_bytes:
            structured = ""  # not stored: the capped text keeps the beginning; half a JSON document helps nobody
        # Structured content first: its keys find the secrets that the text may show without a key.
        structured = storable(self._redactor.scrub_json_text(structured, self._secrets))
        scrubbed = storable(self._redactor.scrub_result_text(text, self._secrets))
        capped = self._redactor.cap(scrubbed, original_size_bytes=size)
        self.record(
            ToolCallFinished(
                call_id=call_id,
                tool_name=tool_name,
                result_text=capped.text,
                result_json=structured,
                is_error=outcome.is_error,
                duration=duration,
                status=outcome.status,
                original_size_bytes=capped.original_size_bytes,
                truncated=capped.truncated or len(text) < len(outcome.text),
                child_run_id=child_run_id,
            ),
            time=time,
            duration=duration,
        )

    def final_response(self, text: str) -> None:
        self.record(FinalResponse(text=self.scrub_final(text)), time=utc_now())

    def scrub_final(self, text: str) -> str:
        """The final response as streamed and stored: scrubbed like free text (the model saw unredacted results)."""
        return storable(self._redactor.scrub_text(text, self._secrets))

    def error(self, error: RunError) -> RunError:
        """Records the run's error as its last step; returns it as streamed and stored (its message may quote a
        model or tool answer holding a secret, so it is scrubbed)."""
        scrubbed = RunError(error.reason, storable(self._redactor.scrub_text(error.message, self._secrets)))
        self.record(scrubbed, time=utc_now())
        return scrubbed
