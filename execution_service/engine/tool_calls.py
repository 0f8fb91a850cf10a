"""Runs the tool calls of one model turn concurrently (bounded), recording a step when each starts and ends.

What the model receives from a result is cut to the agent's `limits.tool_result_bytes` (with a marker saying so);
what is streamed and stored is capped by the redaction rules (AGENTRUN_MAX_TOOL_RESULT_BYTES). The full result is
dropped as soon as both are made, so a huge result never stays in the run's conversation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

import orjson

from agentrun_core.domain import ErrorReason, ToolCallStatus
from agentrun_core.ids import new_run_id
from execution_service.agents.spec import AgentLimits
from execution_service.engine.instrumentation import RunTelemetry
from execution_service.engine.step_recorder import StepRecorder, utc_now
from execution_service.model.base import FunctionCall, FunctionResult
from execution_service.tools.base import (
    ReplaysChildRuns,
    ResolvedTool,
    ToolCallContext,
    ToolOutcome,
    ToolProvider,
    current_tool_call_id,
)
from execution_service.tools.results import media_share, with_media_within

log = logging.getLogger(__name__)


def utf8_size(text: str) -> int:
    """The UTF-8 size of `text`, without encoding it when it is ASCII (str.isascii is O(1))."""
    return len(text) if text.isascii() else len(text.encode())


def cut_for_model(text: str, limit_bytes: int, size_bytes: int) -> str:
    """`text` cut to its first `limit_bytes` UTF-8 bytes (on a character boundary), with a marker the model can read
    saying how much was cut; `text` itself when it fits. `size_bytes` is the UTF-8 size of `text`."""
    if size_bytes <= limit_bytes:
        return text
    head = text[:limit_bytes].encode()[:limit_bytes].decode(errors="ignore")  # never encodes more than it keeps
    return (
        f"{head}\n[agentrun cut this tool result here: it is {size_bytes} bytes long and only the first "
        f"{utf8_size(head)} are shown (limits.tool_result_bytes)]"
    )


def response_for_model(outcome: ToolOutcome, limit_bytes: int, size_bytes: int) -> dict[str, object]:
    """The function response the model receives: the structured result when the tool gave one that fits in
    `limit_bytes`, else its text cut to `limit_bytes`. `size_bytes`: the UTF-8 size of `outcome.text`."""
    text = cut_for_model(outcome.text, limit_bytes, size_bytes)
    if outcome.is_error:
        return {"error": text}
    if outcome.structured_json and utf8_size(outcome.structured_json) <= limit_bytes:
        try:
            structured = orjson.loads(outcome.structured_json)
            # The MCP SDK wraps a tool's primitive return value as {"result": value}: do not wrap it twice.
            if isinstance(structured, dict) and structured.keys() == {"result"}:
                return structured
            return {"result": structured}
        except orjson.JSONDecodeError:
            log.warning("tool returned structured content that is not JSON; sending its text")
    return {"result": text}


async def _call_one(
    call: FunctionCall,
    tool: ResolvedTool | None,
    provider: ToolProvider,
    recorder: StepRecorder,
    timeout_s: float,
    limit: asyncio.Semaphore,
    telemetry: RunTelemetry,
    result_bytes: int,
    media_bytes: int,
) -> FunctionResult:
    """`media_bytes`: the media this call may send the model (its share of the turn's: tools.results.media_share)."""
    async with limit:
        span = telemetry.start_tool_call(
            call.id, tool.name if tool else call.name, tool.server if tool else "", call.arguments
        )
        started = utc_now()
        clock = time.perf_counter()
        child_run_id = ""
        if tool is None:
            unknown = ResolvedTool(server="", name=call.name, exposed_name=call.name, description="", input_schema={})
            recorder.tool_started(call.id, unknown, call.arguments, time=started)
            outcome = ToolOutcome(
                text=f"unknown tool {call.name!r}: this agent can only call the tools it was given",
                is_error=True,
                status=ToolCallStatus.FAILED,
                error_reason=ErrorReason.TOOL_NOT_FOUND,
            )
        else:
            # A sub-agent's call starts a child run: its id is on the call's steps, from the first. A fork's call
            # replayed from its original starts none: it names the original's child run.
            context = ToolCallContext(call.id, child_run_id=_child_run_id(provider, call.id) if tool.starts_run else "")
            child_run_id = context.child_run_id
            recorder.tool_started(call.id, tool, call.arguments, time=started, child_run_id=child_run_id)
            current_tool_call_id.set(call.id)  # this call's own task: nothing else sees it
            try:
                # Inside: a cancel that comes while the step goes out still gives the started call its result.
                await recorder.let_watchers_run()
                outcome = await provider.call(tool, call.arguments, timeout_s, context)
                outcome = with_media_within(outcome, media_bytes)
            except asyncio.CancelledError:
                elapsed = timedelta(seconds=time.perf_counter() - clock)
                cancelled = ToolOutcome(
                    "cancelled: the run was cancelled", is_error=True, status=ToolCallStatus.CANCELLED
                )
                recorder.tool_finished(
                    call.id,
                    tool.name,
                    cancelled,
                    time=utc_now(),
                    duration=elapsed,
                    model_bytes=result_bytes,
                    child_run_id=child_run_id,
                )
                span.finished(cancelled, elapsed)
                raise
        elapsed = timedelta(seconds=time.perf_counter() - clock)
        ended_ns = time.time_ns()
        name = tool.name if tool is not None else call.name
        size = utf8_size(outcome.text)
        recorder.tool_finished(
            call.id,
            name,
            outcome,
            time=utc_now(),
            duration=elapsed,
            size_bytes=size,
            model_bytes=result_bytes,
            child_run_id=child_run_id,
        )
        try:
            await recorder.let_watchers_run()  # the step goes out first; the span's bookkeeping can wait
        finally:
            span.finished(outcome, elapsed, end_time_ns=ended_ns)
        if outcome.is_error:
            log.info(
                "tool call failed",
                extra={
                    "run_id": recorder.run_id,
                    "tool": name,
                    "reason": str(outcome.error_reason or ""),
                    "status": outcome.status,
                },
            )
        if size > result_bytes:
            log.info(
                "tool result cut for the model",
                extra={"run_id": recorder.run_id, "tool": name, "size_bytes": size, "limit_bytes": result_bytes},
            )
        return FunctionResult(
            call_id=call.id,
            name=call.name,
            response=response_for_model(outcome, result_bytes, size),
            is_error=outcome.is_error,
            media=outcome.media,
        )


def _child_run_id(provider: ToolProvider, call_id: str) -> str:
    """The run a sub-agent's call names: the original's child for a call a fork replays, else a new run id."""
    replayed = provider.replayed_child_run_id(call_id) if isinstance(provider, ReplaysChildRuns) else ""
    return replayed or new_run_id()


async def run_tool_calls(
    calls: tuple[FunctionCall, ...],
    tools_by_name: dict[str, ResolvedTool],
    provider: ToolProvider,
    recorder: StepRecorder,
    *,
    timeout_s: float,
    max_parallel: int,
    result_bytes: int = AgentLimits().tool_result_bytes,
    telemetry: RunTelemetry | None = None,
) -> tuple[FunctionResult, ...]:
    """Results in call order, each cut to `result_bytes` for the model. Cancellation cancels every in-flight call
    (each records a CANCELLED result)."""
    limit = asyncio.Semaphore(max_parallel)
    traced = telemetry or RunTelemetry.noop()
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(
                _call_one(
                    call,
                    tools_by_name.get(call.name),
                    provider,
                    recorder,
                    timeout_s,
                    limit,
                    traced,
                    result_bytes,
                    media_share(len(calls)),
                )
            )
            for call in calls
        ]
    return tuple(task.result() for task in tasks)
