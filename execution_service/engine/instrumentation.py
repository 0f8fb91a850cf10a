"""Traces and metrics of runs, in the OpenTelemetry GenAI semantic conventions (v1.41), kept out of the loop's way.

One run is one trace: `invoke_agent {agent}` (INTERNAL, child of the ExecuteAgent server span) with a
`generate_content {model}` (CLIENT) child per model call and an `execute_tool {tool}` (INTERNAL) child per tool call.
The run manager starts the run's span before RunStarted (its trace id is the run's trace_id) and ends it with the
terminal run; the loop wraps each model and tool call in `RunTelemetry.model_call` / `tool_call`.

Content (prompts, model text, tool arguments and results) goes on spans only when Telemetry.capture_content is on,
and then redacted like everything the service streams and stores.

Durable mode: each execution of a run (the first, and each resumption on any replica) has its own `invoke_agent`
span in the run's trace (`remote_parent`: the trace id is the run's trace_id, the parent the span that started the
run). A resumed run's calls that return their checkpointed result (`replayed_call`) keep their span, marked
`agentrun.replayed = true`, and record no metrics: each call's tokens and duration are counted once, by the
execution that made it.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta
from typing import Any

import orjson
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import AttributeValue

from agentrun_core.domain import Run, RunStatus, TokenUsage
from agentrun_core.telemetry import Telemetry, is_enabled
from execution_service.agents.spec import AgentSpec, RenderedPrompt
from execution_service.model.base import ModelResponse
from execution_service.redaction import Redactor, SecretMemory
from execution_service.redaction.redactor import SCRUB_MARGIN_CHARS
from execution_service.tools.base import ToolOutcome

# Bucket boundaries recommended by the GenAI semantic conventions.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
OPERATION_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
RUN_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800)

# gen_ai.provider.name per ModelProvider.name.
_PROVIDER_NAMES = {"gemini": "gcp.gemini", "test": "test"}

SCOPE = "agentrun.execution"

# Attribute names (GenAI semantic conventions v1.41 and ours).
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
AGENT_NAME = "gen_ai.agent.name"
TOKEN_TYPE = "gen_ai.token.type"
TOOL_NAME = "gen_ai.tool.name"
ERROR_TYPE = "error.type"
MCP_SERVER = "agentrun.mcp.server"
REPLAYED = "agentrun.replayed"

# Set by the durable mode's providers after each call: True when its result came from a checkpoint (an earlier
# execution made the call), so its span is marked and its metrics are not recorded again.
replayed_call: ContextVar[bool] = ContextVar("replayed_call", default=False)


def remote_parent(trace_id: str, span_id: str = "") -> otel_context.Context | None:
    """A context whose current span is a remote parent in trace `trace_id` (32 hex digits) with span id `span_id`
    (16 hex digits; a random one when "" or malformed): spans started in it belong to that trace. None when
    `trace_id` is not a trace id."""
    try:
        trace_value = int(trace_id, 16) if len(trace_id) == 32 else 0
    except ValueError:
        trace_value = 0
    if not trace_value:
        return None
    try:
        span_value = int(span_id, 16) if len(span_id) == 16 else 0
    except ValueError:
        span_value = 0
    parent = SpanContext(
        trace_id=trace_value,
        span_id=span_value or int.from_bytes(secrets.token_bytes(8), "big") or 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


def current_span_ids() -> tuple[str, str]:
    """(trace id, span id) of the current span, ("", "") when there is none."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return "", ""
    return trace.format_trace_id(ctx.trace_id), trace.format_span_id(ctx.span_id)


def provider_name(name: str) -> str:
    return _PROVIDER_NAMES.get(name, name)


def input_tokens(usage: TokenUsage) -> int:
    """gen_ai input tokens: the prompt (cached included) plus the tool-use prompt."""
    return usage.input_tokens + usage.tool_use_prompt_tokens


def output_tokens(usage: TokenUsage) -> int:
    """gen_ai output tokens: candidates plus thoughts."""
    return usage.output_tokens + usage.thinking_tokens


class EngineInstruments:
    """The tracer and the instruments of one ExecutionService (created once, shared by all runs)."""

    def __init__(self, telemetry: Telemetry, redactor: Redactor | None = None) -> None:
        self.tracer = telemetry.tracer(SCOPE)
        self.capture_content = telemetry.capture_content
        self.redactor = redactor or Redactor()
        meter = telemetry.meter(SCOPE)
        self.executions = meter.create_counter("agentrun.executions", unit="{run}", description="Runs finished")
        self.execution_duration = meter.create_histogram(
            "agentrun.execution.duration",
            unit="s",
            description="Duration of runs, start to terminal status",
            explicit_bucket_boundaries_advisory=RUN_DURATION_BUCKETS,
        )
        self.run_tokens = meter.create_histogram(
            "agentrun.token.usage",
            unit="{token}",
            description="Tokens used per run, by gen_ai.token.type",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Tokens used per model call, by gen_ai.token.type",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.operation_duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="Duration of model calls (retries included)",
            explicit_bucket_boundaries_advisory=OPERATION_DURATION_BUCKETS,
        )
        self.tool_duration = meter.create_histogram(
            "agentrun.tool.duration",
            unit="s",
            description="Duration of tool calls",
            explicit_bucket_boundaries_advisory=OPERATION_DURATION_BUCKETS,
        )
        self.tool_errors = meter.create_counter(
            "agentrun.tool.errors", unit="{call}", description="Tool calls that ended in an error"
        )

    def start_run(
        self,
        *,
        run_id: str,
        agent: AgentSpec,
        model: str,
        provider: str,
        user: str,
        prompt: RenderedPrompt,
        context: otel_context.Context | None = None,
        extra: Mapping[str, AttributeValue] | None = None,
    ) -> RunTelemetry:
        """Starts the run's `invoke_agent` span as a child of the current span (the ExecuteAgent call), or of
        `context`'s (durable mode: `remote_parent`), with `extra` attributes; a no-op when run instrumentation is
        switched off (agentrun_core.telemetry.set_enabled)."""
        if not is_enabled():
            return RunTelemetry.noop()
        attributes: dict[str, AttributeValue] = {
            OPERATION: "invoke_agent",
            PROVIDER: provider_name(provider),
            AGENT_NAME: agent.name,
            "gen_ai.agent.id": agent.version,
            REQUEST_MODEL: model,
            "agentrun.run.id": run_id,
            "agentrun.user": user,
            **(extra or {}),
        }
        if self.capture_content:
            scrub = self.redactor.scrub_text
            if prompt.system_instruction:
                attributes["gen_ai.system_instructions"] = _json(
                    [{"type": "text", "content": scrub(prompt.system_instruction)}]
                )
            attributes["gen_ai.input.messages"] = _json(
                [{"role": "user", "parts": [{"type": "text", "content": scrub(prompt.user_text)}]}]
            )
        span = self.tracer.start_span(
            f"invoke_agent {agent.name}", context=context, kind=SpanKind.INTERNAL, attributes=attributes
        )
        metric_attributes = {AGENT_NAME: agent.name, REQUEST_MODEL: model, PROVIDER: provider_name(provider)}
        return RunTelemetry(self, span, metric_attributes)


class RunTelemetry:
    """One run's span and the helpers the loop calls around model and tool calls."""

    def __init__(self, instruments: EngineInstruments, span: Span, attributes: Mapping[str, AttributeValue]) -> None:
        self._instruments = instruments
        self.span = span
        self._attributes = dict(attributes)
        self._parent = trace.set_span_in_context(span)
        self._ended = False
        # The run's remembered secrets (StepRecorder's), so captured content is scrubbed like the streamed steps: a
        # secret a tool returned and the model repeats in prose stays out of the spans too.
        self.secrets: SecretMemory | None = None

    @classmethod
    def noop(cls) -> RunTelemetry:
        return cls(_disabled_instruments(), trace.INVALID_SPAN, {})

    @property
    def trace_id(self) -> str:
        """The run's trace id (32 hex digits), or "" when telemetry is disabled."""
        ctx = self.span.get_span_context()
        return trace.format_trace_id(ctx.trace_id) if ctx.is_valid else ""

    @contextmanager
    def activate(self) -> Iterator[None]:
        """Makes the run's span current (tasks created inside inherit it). Ends the span if the block raises."""
        try:
            with trace.use_span(self.span, record_exception=False, set_status_on_exception=False):
                yield
        except BaseException as exc:
            self._end_failed(type(exc).__qualname__)
            raise

    @contextmanager
    def model_call(self, model: str) -> Iterator[ModelCallSpan]:
        """Wraps one model call (the `generate_content {model}` span and the gen_ai.client.* metrics)."""
        inst = self._instruments
        attributes: dict[str, AttributeValue] = {
            OPERATION: "generate_content",
            PROVIDER: self._attributes.get(PROVIDER, ""),
            REQUEST_MODEL: model,
        }
        span = inst.tracer.start_span(
            f"generate_content {model}", context=self._parent, kind=SpanKind.CLIENT, attributes=attributes
        )
        call = ModelCallSpan(inst, span, {**attributes, AGENT_NAME: self._attributes.get(AGENT_NAME, "")}, self.secrets)
        clock = time.perf_counter()
        try:
            yield call
        except BaseException as exc:
            call.failed(_exception_type(exc))
            raise
        finally:
            call.end(time.perf_counter() - clock)

    def start_tool_call(self, call_id: str, tool_name: str, server: str, arguments: Any) -> ToolCallSpan:
        """Starts the `execute_tool {tool}` span and makes it current (so MCP requests carry its context) until
        `ToolCallSpan.finished`, which must be called in the same task (tool providers never raise but for
        cancellation, so the caller calls it on both paths)."""
        inst = self._instruments
        attributes: dict[str, AttributeValue] = {
            OPERATION: "execute_tool",
            TOOL_NAME: tool_name,
            "gen_ai.tool.call.id": call_id,
            "gen_ai.tool.type": "function",
            MCP_SERVER: server,
        }
        if inst.capture_content:
            attributes["gen_ai.tool.call.arguments"] = _json(inst.redactor.scrub_value(arguments, self.secrets))
        span = inst.tracer.start_span(
            f"execute_tool {tool_name}", context=self._parent, kind=SpanKind.INTERNAL, attributes=attributes
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        return ToolCallSpan(
            inst,
            span,
            {TOOL_NAME: tool_name, MCP_SERVER: server, AGENT_NAME: self._attributes.get(AGENT_NAME, "")},
            token,
            self.secrets,
        )

    def finish(self, run: Run) -> None:
        """Ends the run's span with the terminal run's totals and records the run metrics."""
        if self._ended:
            return
        self._ended = True
        usage = run.token_usage
        span = self.span
        if span.is_recording():
            span.set_attributes(
                {
                    "agentrun.run.status": run.status.value,
                    "gen_ai.usage.input_tokens": input_tokens(usage),
                    "gen_ai.usage.output_tokens": output_tokens(usage),
                    "gen_ai.usage.cache_read.input_tokens": usage.cached_tokens,
                    "gen_ai.usage.reasoning.output_tokens": usage.thinking_tokens,
                    "agentrun.steps": run.steps_taken,
                }
            )
            if run.error is not None:
                span.set_attribute(ERROR_TYPE, run.error.reason)
            if run.status is not RunStatus.COMPLETED:
                span.set_status(Status(StatusCode.ERROR, run.error.message if run.error else run.status.value))
        span.end()
        inst = self._instruments
        base = {
            AGENT_NAME: self._attributes.get(AGENT_NAME, run.agent_name),
            REQUEST_MODEL: self._attributes.get(REQUEST_MODEL, run.model_name),
        }
        outcome = {
            **base,
            "agentrun.run.status": run.status.value,
            "agentrun.success": run.status is RunStatus.COMPLETED,
        }
        if run.error is not None:
            outcome[ERROR_TYPE] = run.error.reason
        inst.executions.add(1, outcome)
        if run.duration is not None:
            inst.execution_duration.record(run.duration.total_seconds(), outcome)
        # Labelled by success too (as the seed's metrics are), so spend on failed runs can be charted on its own.
        success = outcome["agentrun.success"]
        inst.run_tokens.record(input_tokens(usage), {**base, "agentrun.success": success, TOKEN_TYPE: "input"})
        inst.run_tokens.record(output_tokens(usage), {**base, "agentrun.success": success, TOKEN_TYPE: "output"})

    def _end_failed(self, error_type: str) -> None:
        if self._ended:
            return
        self._ended = True
        self.span.set_attribute(ERROR_TYPE, error_type)
        self.span.set_status(Status(StatusCode.ERROR))
        self.span.end()


class ModelCallSpan:
    def __init__(
        self,
        instruments: EngineInstruments,
        span: Span,
        attributes: dict[str, AttributeValue],
        secrets: SecretMemory | None = None,
    ) -> None:
        self._instruments = instruments
        self._span = span
        self._attributes = attributes
        self._secrets = secrets
        self._error: str | None = None
        # The call's result came from a checkpoint (durable mode): its metrics were recorded when it was made.
        self._replayed = False

    def succeeded(self, response: ModelResponse) -> None:
        usage = response.usage
        inst = self._instruments
        self._note_replayed()
        if response.model:
            self._attributes[RESPONSE_MODEL] = response.model
        if self._span.is_recording():
            attributes: dict[str, AttributeValue] = {
                "gen_ai.usage.input_tokens": input_tokens(usage),
                "gen_ai.usage.output_tokens": output_tokens(usage),
                "gen_ai.usage.cache_read.input_tokens": usage.cached_tokens,
                "gen_ai.usage.reasoning.output_tokens": usage.thinking_tokens,
            }
            if response.model:
                attributes[RESPONSE_MODEL] = response.model
            if response.finish_reason:
                attributes["gen_ai.response.finish_reasons"] = (response.finish_reason,)
            if inst.capture_content:
                attributes["gen_ai.output.messages"] = _json([_output_message(response, inst.redactor, self._secrets)])
            self._span.set_attributes(attributes)
        if not self._replayed:
            inst.token_usage.record(input_tokens(usage), {**self._attributes, TOKEN_TYPE: "input"})
            inst.token_usage.record(output_tokens(usage), {**self._attributes, TOKEN_TYPE: "output"})

    def _note_replayed(self) -> None:
        if replayed_call.get():
            replayed_call.set(False)  # read once: the tasks of the turn's tool calls start with it False
            self._replayed = True
            self._span.set_attribute(REPLAYED, True)

    def failed(self, error_type: str) -> None:
        if self._error is not None:
            return
        self._note_replayed()
        self._error = error_type
        self._span.set_attribute(ERROR_TYPE, error_type)
        self._span.set_status(Status(StatusCode.ERROR))

    def end(self, duration_s: float) -> None:
        attributes = self._attributes if self._error is None else {**self._attributes, ERROR_TYPE: self._error}
        if not self._replayed:
            self._instruments.operation_duration.record(duration_s, attributes)
        self._span.end()


class ToolCallSpan:
    def __init__(
        self,
        instruments: EngineInstruments,
        span: Span,
        attributes: dict[str, AttributeValue],
        token: otel_context.Token[otel_context.Context],
        secrets: SecretMemory | None = None,
    ) -> None:
        self._secrets = secrets
        self._instruments = instruments
        self._span = span
        self._attributes = attributes
        self._token = token
        self._finished = False

    def finished(self, outcome: ToolOutcome, duration: timedelta, *, end_time_ns: int | None = None) -> None:
        """Records how the call ended (error.type: the ErrorReason, else the status), its duration; ends the span
        (at `end_time_ns`, time.time_ns() when the call ended, if the caller did other things since)."""
        if self._finished:
            return
        self._finished = True
        try:
            self._record(outcome, duration)
        finally:
            otel_context.detach(self._token)
            self._span.end(end_time=end_time_ns)

    def _record(self, outcome: ToolOutcome, duration: timedelta) -> None:
        inst = self._instruments
        replayed = replayed_call.get()
        if replayed:
            replayed_call.set(False)
            self._span.set_attribute(REPLAYED, True)
        attributes = {**self._attributes, "agentrun.tool.status": outcome.status.value}
        if outcome.is_error:
            error_type = str(outcome.error_reason or outcome.status.value)
            attributes[ERROR_TYPE] = error_type
            self._span.set_attribute(ERROR_TYPE, error_type)
            self._span.set_status(Status(StatusCode.ERROR))
            if not replayed:
                inst.tool_errors.add(1, attributes)
        if inst.capture_content and self._span.is_recording():
            # Only what the span keeps is scrubbed (a margin past the cap, so a secret cut in two is still found).
            kept = outcome.text[: inst.redactor.rules.max_result_bytes + SCRUB_MARGIN_CHARS]
            capped = inst.redactor.cap(inst.redactor.scrub_result_text(kept, self._secrets))
            self._span.set_attribute("gen_ai.tool.call.result", capped.text)
        if not replayed:
            inst.tool_duration.record(duration.total_seconds(), attributes)


def _exception_type(exc: BaseException) -> str:
    return "CANCELLED" if isinstance(exc, asyncio.CancelledError) else type(exc).__qualname__


def _output_message(response: ModelResponse, redactor: Redactor, secrets: SecretMemory | None) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if response.text:
        parts.append({"type": "text", "content": redactor.scrub_text(response.text, secrets)})
    for call in response.function_calls:
        arguments = redactor.scrub_value(call.arguments, secrets)
        parts.append({"type": "tool_call", "id": call.id, "name": call.name, "arguments": arguments})
    return {"role": "assistant", "parts": parts, "finish_reason": response.finish_reason.lower()}


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


@functools.lru_cache(maxsize=1)
def _disabled_instruments() -> EngineInstruments:
    return EngineInstruments(Telemetry.disabled())
