"""Realistic, self-consistent runs for tests and benchmarks.

`make_run()` gives a COMPLETED run of 40 steps (9 model calls, 15 tool calls as started/finished pairs, a final
response) whose summaries agree with its steps: tool_calls from agentrun_core.domain.tool_calls_from_steps,
token_usage = sum of the model calls, steps_taken = number of model calls, tools_used in order of first use, and a
cost. Values vary with `seed` (default: derived from the run id) but are deterministic.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from agentrun_core.domain import (
    Cost,
    ExecutionStep,
    FinalResponse,
    ModelCall,
    Run,
    RunError,
    RunStatus,
    StepPayload,
    TokenUsage,
    ToolCallFinished,
    ToolCallStarted,
    ToolCallStatus,
    tool_calls_from_steps,
)
from agentrun_core.ids import new_run_id

TOOLS: tuple[tuple[str, str], ...] = (
    ("get_current_time", "time"),
    ("convert_time", "time"),
    ("git_status", "git"),
    ("git_log", "git"),
    ("git_diff", "git"),
    ("read_file", "filesystem"),
)
PRICE_PER_INPUT_TOKEN = Decimal("0.0000003")
PRICE_PER_OUTPUT_TOKEN = Decimal("0.0000025")
PRICE_TABLE_VERSION = "genai-prices 0.2.3"

_ERROR_FOR_STATUS = {
    RunStatus.FAILED: RunError("MODEL_RATE_LIMITED", "429 RESOURCE_EXHAUSTED: quota exceeded"),
    RunStatus.CANCELLED: RunError("CANCELLED", "cancelled by the client"),
    RunStatus.TIMED_OUT: RunError("RUN_TIMEOUT", "run exceeded its 300 s timeout"),
    RunStatus.INTERRUPTED: RunError("INTERRUPTED", "the execution service stopped"),
}


def _split(total: int, parts: int) -> list[int]:
    """`total` spread over `parts` as evenly as possible, larger shares first."""
    if parts <= 0:
        return []
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def make_run(
    *,
    run_id: str | None = None,
    agent: str = "agent-a",
    user: str = "alice",
    status: RunStatus = RunStatus.COMPLETED,
    start_time: datetime | None = None,
    model_calls: int = 9,
    tool_calls: int = 15,
    model: str = "gemini-2.5-flash",
    seed: int | None = None,
    labels: dict[str, str] | None = None,
) -> Run:
    """A consistent run; see the module docstring. RUNNING runs have no final step, end time, duration or error."""
    if model_calls < 1:
        raise ValueError("a run makes at least one model call")
    run_id = run_id or new_run_id()
    rng = random.Random(seed if seed is not None else run_id)
    start = start_time or datetime.now(UTC).replace(microsecond=rng.randrange(1_000_000))
    # Tool calls are asked for by every model call but the last (which answers).
    calls_per_turn = _split(tool_calls, model_calls - 1) if model_calls > 1 else []
    if model_calls == 1 and tool_calls:
        raise ValueError("tool calls need at least two model calls (one asks, the last answers)")

    payloads: list[tuple[StepPayload, timedelta]] = []
    usage_total = TokenUsage()
    tools_used: list[str] = []
    call_number = 0
    for turn in range(model_calls):
        asked = calls_per_turn[turn] if turn < len(calls_per_turn) else 0
        prompt = 800 + 350 * turn + rng.randrange(200)
        output = 20 + rng.randrange(300)
        cached = prompt // 2 if turn else 0
        thinking = rng.randrange(150)
        usage = TokenUsage(
            input_tokens=prompt,
            output_tokens=output,
            total_tokens=prompt + output + thinking,
            cached_tokens=cached,
            thinking_tokens=thinking,
            tool_use_prompt_tokens=0,
        )
        usage_total += usage
        last = turn == model_calls - 1
        payloads.append(
            (
                ModelCall(
                    model=model,
                    usage=usage,
                    finish_reason="STOP",
                    time_to_first_token=timedelta(microseconds=150_000 + rng.randrange(400_000)),
                    text="It is 14:03 in Paris." if last else "",
                    function_call_count=asked,
                ),
                timedelta(microseconds=300_000 + rng.randrange(1_500_000)),
            )
        )
        for _ in range(asked):
            call_number += 1
            tool_name, server = TOOLS[rng.randrange(len(TOOLS))]
            if tool_name not in tools_used:
                tools_used.append(tool_name)
            call_id = f"call-{call_number:03d}"
            is_error = call_number % 7 == 0
            duration = timedelta(microseconds=2_000 + rng.randrange(250_000))
            payloads.append(
                (
                    ToolCallStarted(
                        call_id=call_id,
                        tool_name=tool_name,
                        server=server,
                        arguments_json=f'{{"timezone": "Europe/Paris", "n": {call_number}}}',
                    ),
                    timedelta(0),
                )
            )
            result = f"tool {tool_name} failed: timeout" if is_error else f'{{"result": "ok {call_number}"}}'
            payloads.append(
                (
                    ToolCallFinished(
                        call_id=call_id,
                        tool_name=tool_name,
                        result_text=result,
                        result_json="" if is_error else result,
                        is_error=is_error,
                        duration=duration,
                        status=ToolCallStatus.FAILED if is_error else ToolCallStatus.SUCCEEDED,
                        original_size_bytes=len(result),
                    ),
                    duration,
                )
            )

    final_text = "It is 14:03 in Paris."
    error = _ERROR_FOR_STATUS.get(status)
    if status is RunStatus.COMPLETED:
        payloads.append((FinalResponse(text=final_text), timedelta(0)))
    elif error is not None:
        payloads.append((error, timedelta(0)))

    steps: list[ExecutionStep] = []
    clock = start
    for sequence, (payload, duration) in enumerate(payloads, start=1):
        clock += timedelta(microseconds=1_000 + rng.randrange(5_000))
        steps.append(ExecutionStep(run_id=run_id, sequence=sequence, time=clock, payload=payload, duration=duration))
        clock += duration
    end = clock + timedelta(microseconds=500)

    terminal = status.is_terminal
    cost = (
        usage_total.input_tokens * PRICE_PER_INPUT_TOKEN
        + (usage_total.output_tokens + usage_total.thinking_tokens) * PRICE_PER_OUTPUT_TOKEN
    )
    return Run(
        id=run_id,
        agent_name=agent,
        status=status,
        start_time=start,
        agent_version="sha256:" + f"{rng.getrandbits(128):032x}",
        user=user,
        task="What time is it in Paris?",
        labels=dict(labels) if labels is not None else {"team": "platform", "env": "test"},
        variables={"city": "Paris"},
        error=error,
        final_response=final_text if status is RunStatus.COMPLETED else "",
        model_name=model,
        end_time=end if terminal else None,
        duration=end - start if terminal else None,
        token_usage=usage_total,
        cost=Cost(amount=cost, currency_code="USD", price_table_version=PRICE_TABLE_VERSION),
        steps_taken=model_calls,
        tools_used=tuple(tools_used),
        trace_id=f"{rng.getrandbits(128):032x}",
        execution_steps=tuple(steps),
        tool_calls=tool_calls_from_steps(steps),
    )
