"""Runs the tool calls of one model turn concurrently (bounded), recording a step when each starts and ends."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

import orjson

from agentrun_core.domain import ErrorReason, ToolCallStatus
from execution_service.engine.instrumentation import RunTelemetry
from execution_service.engine.step_recorder import StepRecorder, utc_now
from execution_service.model.base import FunctionCall, FunctionResult
from execution_service.tools.base import ResolvedTool, ToolOutcome, ToolProvider

log = logging.getLogger(__name__)


def _response_for_model(outcome: ToolOutcome) -> dict[str, object]:
    """The function response the model receives: the structured result when the tool gave one, else its text."""
    if outcome.is_error:
        return {"error": outcome.text}
    if outcome.structured_json:
        try:
            structured = orjson.loads(outcome.structured_json)
            # The MCP SDK wraps a tool's primitive return value as {"result": value}: do not wrap it twice.
            if isinstance(structured, dict) and structured.keys() == {"result"}:
                return structured
            return {"result": structured}
        except orjson.JSONDecodeError:
            log.warning("tool returned structured content that is not JSON; sending its text")
    return {"result": outcome.text}


async def _call_one(
    call: FunctionCall,
    tool: ResolvedTool | None,
    provider: ToolProvider,
    recorder: StepRecorder,
    timeout_s: float,
    limit: asyncio.Semaphore,
    telemetry: RunTelemetry,
) -> FunctionResult:
    async with limit:
        span = telemetry.start_tool_call(
            call.id, tool.name if tool else call.name, tool.server if tool else "", call.arguments
        )
        started = utc_now()
        clock = time.perf_counter()
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
            recorder.tool_started(call.id, tool, call.arguments, time=started)
            await recorder.let_watchers_run()
            try:
                outcome = await provider.call(tool, call.arguments, timeout_s)
            except asyncio.CancelledError:
                elapsed = timedelta(seconds=time.perf_counter() - clock)
                cancelled = ToolOutcome(
                    "cancelled: the run was cancelled", is_error=True, status=ToolCallStatus.CANCELLED
                )
                recorder.tool_finished(call.id, tool.name, cancelled, time=utc_now(), duration=elapsed)
                span.finished(cancelled, elapsed)
                raise
        elapsed = timedelta(seconds=time.perf_counter() - clock)
        ended_ns = time.time_ns()
        name = tool.name if tool is not None else call.name
        recorder.tool_finished(call.id, name, outcome, time=utc_now(), duration=elapsed)
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
        return FunctionResult(
            call_id=call.id, name=call.name, response=_response_for_model(outcome), is_error=outcome.is_error
        )


async def run_tool_calls(
    calls: tuple[FunctionCall, ...],
    tools_by_name: dict[str, ResolvedTool],
    provider: ToolProvider,
    recorder: StepRecorder,
    *,
    timeout_s: float,
    max_parallel: int,
    telemetry: RunTelemetry | None = None,
) -> tuple[FunctionResult, ...]:
    """Results in call order. Cancellation cancels every in-flight call (each records a CANCELLED result)."""
    limit = asyncio.Semaphore(max_parallel)
    traced = telemetry or RunTelemetry.noop()
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(
                _call_one(call, tools_by_name.get(call.name), provider, recorder, timeout_s, limit, traced)
            )
            for call in calls
        ]
    return tuple(task.result() for task in tasks)
