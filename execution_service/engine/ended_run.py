"""A run's terminal record rebuilt from its steps, for a run that ended outside its loop (its process died: INTERRUPTED
at the next start, publish.recovery; its durable workflow failed: FAILED, durable.failure): the totals a finished run
has, from the steps (token usage summed over its model calls, cost, model calls taken, tools used, tool calls)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from agentrun_core.domain import (
    ExecutionStep,
    ModelCall,
    Run,
    RunError,
    RunStatus,
    TokenUsage,
    ToolCallStarted,
    tool_calls_from_steps,
)
from execution_service.model.pricing import price_steps


def ended_from_steps(
    base: Run, steps: Sequence[ExecutionStep], status: RunStatus, error: RunError, end: datetime
) -> Run:
    """`base` ended with `status` and `error` at `end`, its steps (the error step included) and their totals."""
    calls = [step.payload for step in steps if isinstance(step.payload, ModelCall)]
    usage = sum((call.usage for call in calls), TokenUsage())
    tools_used = dict.fromkeys(step.payload.tool_name for step in steps if isinstance(step.payload, ToolCallStarted))
    return dataclasses.replace(
        base,
        status=status,
        error=error,
        end_time=end,
        duration=end - base.start_time,
        token_usage=usage,
        cost=price_steps(base.model_name, steps),
        steps_taken=len(calls),
        tools_used=tuple(tools_used),
        execution_steps=tuple(steps),
        tool_calls=tool_calls_from_steps(tuple(steps)),
    )
