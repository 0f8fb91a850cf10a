"""The waterfall of a run: its model calls and tool calls as bars on one time axis, from the stored (or streamed) steps.

A model call is one ModelCall step: it starts at the step's time and lasts the step's duration; its time to first
token is marked inside the bar. A tool call is a ToolCallStarted / ToolCallFinished pair with the same call_id: it
starts at the started step's time and lasts the finished step's measured duration. Every bar has a row of its own,
so tool calls that ran in parallel sit side by side on their own lanes, overlapping in time. A call without a result
is still running (live) or never finished (a terminal run: it is drawn to the run's end, marked "no result"). A
durable run's resumption (RunResumed) is a row of its own whose bar is the gap: from the run's last step before the
replica running it stopped to the resumption, so an empty stretch of the waterfall says what it was.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from agentrun.runs.v1 import run_pb2
from google.protobuf import timestamp_pb2

from agentrun_web.views import format as fmt

# A result with one of these statuses ended normally: is_error tells success from failure.
_ENDED_NORMALLY = (
    run_pb2.TOOL_CALL_STATUS_SUCCEEDED,
    run_pb2.TOOL_CALL_STATUS_UNSPECIFIED,
    run_pb2.TOOL_CALL_STATUS_RUNNING,
)
# Tool call states by ToolCallFinished.status (a status this console does not know is "unknown", with its number).
_TOOL_STATES = {
    run_pb2.TOOL_CALL_STATUS_FAILED: "failed",
    run_pb2.TOOL_CALL_STATUS_TIMED_OUT: "timed-out",
    run_pb2.TOOL_CALL_STATUS_CANCELLED: "cancelled",
}
_STATE_WORDS = {
    "ok": "",
    "failed": "failed",
    "timed-out": "timed out",
    "cancelled": "cancelled",
    "running": "running",
    "no-result": "no result",
    "warn": "",
    "retried": "retried",
    "gap": "",
    "unknown": "",
}
_NICE_STEPS = (1, 2, 5)
MAX_TICKS = 8


@dataclass(frozen=True, slots=True)
class AttemptMark:
    """A failed attempt of a model call, drawn inside its bar: where it starts and how long it lasted, as shares
    (0..1) of the call's duration, and what it was (for the mark's title)."""

    at: float
    width: float
    title: str


@dataclass(slots=True)
class Bar:
    key: str
    kind: str  # "model", "tool", or "resumed" (the gap before a durable run's resumption)
    label: str
    start_s: float
    # None while the call is running.
    duration_s: float | None
    state: str
    # Steps whose details the side pane shows for this bar, in sequence order.
    steps: list[int] = field(default_factory=list)
    ttft_s: float | None = None
    note: str = ""
    # 0: a model call; 1: a tool call (asked for by the model call above it).
    depth: int = 0
    # A model call's failed attempts (retried, or the ones that failed the run).
    attempts: list[AttemptMark] = field(default_factory=list)

    @property
    def state_word(self) -> str:
        return _STATE_WORDS.get(self.state, self.state)

    @property
    def end_s(self) -> float:
        return self.start_s + (self.duration_s or 0.0)

    @property
    def duration_text(self) -> str:
        return fmt.human_seconds(self.duration_s) if self.duration_s is not None else "running"


@dataclass(frozen=True, slots=True)
class Tick:
    at_s: float
    label: str


@dataclass(frozen=True, slots=True)
class Waterfall:
    bars: list[Bar]
    span_s: float
    ticks: list[Tick]

    @property
    def model_calls(self) -> int:
        return sum(1 for bar in self.bars if bar.kind == "model")

    @property
    def tool_calls(self) -> int:
        return sum(1 for bar in self.bars if bar.kind == "tool")


def attempt_label(attempt: run_pb2.ModelAttempt) -> str:
    """`429 RESOURCE_EXHAUSTED`, `MODEL_TIMEOUT` (no answer): what an attempt failed with, shortest first."""
    parts = [str(attempt.code) if attempt.code else "", attempt.status or attempt.reason]
    return " ".join(part for part in parts if part) or "failed"


def model_call_failed(call: run_pb2.ModelCall) -> bool:
    """A model call that got no answer (it failed the run): no finish reason, and its attempts were recorded."""
    return not call.finish_reason and bool(call.failed_attempts)


def _attempt_marks(step: run_pb2.ExecutionStep) -> list[AttemptMark]:
    total = fmt.seconds(step.duration)
    marks = []
    for attempt in step.model_call.failed_attempts:
        duration = fmt.seconds(attempt.duration)
        at = fmt.offset_s(step.time, attempt.start_time) if attempt.HasField("start_time") else 0.0
        share_at = min(max(at / total, 0.0), 1.0) if total > 0 else 0.0
        share = min(duration / total, 1.0 - share_at) if total > 0 else 1.0
        title = f"attempt {attempt.attempt}: {attempt_label(attempt)} after {fmt.human_seconds(duration)}"
        marks.append(AttemptMark(at=share_at, width=share, title=title))
    return marks


def model_bar(step: run_pb2.ExecutionStep, run_start: timestamp_pb2.Timestamp) -> Bar:
    """A model call's bar: ok (STOP), warn (another finish reason), retried (it got its answer after failed
    attempts, drawn inside the bar) or failed (no answer: it failed the run)."""
    call = step.model_call
    reason = call.finish_reason
    usage = fmt.count(fmt.total_tokens(call.usage))
    failed = list(call.failed_attempts)
    if model_call_failed(call):
        state = "failed"
        note = f"failed: {attempt_label(failed[-1])}" + (f" after {len(failed)} attempts" if len(failed) > 1 else "")
    else:
        state = "ok" if reason in ("", "STOP") else "warn"
        note = f"{usage} tokens" + (f" · {reason}" if reason else "")
        if failed:
            state = "retried" if state == "ok" else state
            plural = "s" if len(failed) > 1 else ""
            note += f" · retried after {len(failed)} failed attempt{plural} ({', '.join(map(attempt_label, failed))})"
    return Bar(
        key=f"model-{step.sequence}",
        kind="model",
        label=call.model or "model",
        start_s=max(fmt.offset_s(run_start, step.time), 0.0),
        duration_s=fmt.seconds(step.duration),
        state=state,
        steps=[step.sequence],
        ttft_s=fmt.seconds(call.time_to_first_token) if call.HasField("time_to_first_token") else None,
        note=note,
        attempts=_attempt_marks(step),
    )


def tool_bar(step: run_pb2.ExecutionStep, run_start: timestamp_pb2.Timestamp) -> Bar:
    """The bar of a tool call that has started (and has no result yet)."""
    call = step.tool_call
    return Bar(
        key=f"tool-{call.call_id or step.sequence}",
        kind="tool",
        label=fmt.tool_label(call.tool_name, call.server) + (" → sub-agent run" if call.child_run_id else ""),
        start_s=max(fmt.offset_s(run_start, step.time), 0.0),
        duration_s=None,
        state="running",
        steps=[step.sequence],
        depth=1,
    )


def resumed_bar(step: run_pb2.ExecutionStep, run_start: timestamp_pb2.Timestamp) -> Bar:
    """A durable run's resumption: its bar spans the gap that ended at the RunResumed step."""
    resumed = step.resumed
    gap = fmt.seconds(resumed.gap)
    was = f" (was {resumed.previous_replica})" if resumed.previous_replica else ""
    return Bar(
        key=f"resumed-{step.sequence}",
        kind="resumed",
        label=f"resumed on {resumed.replica or 'another replica'}",
        start_s=max(fmt.offset_s(run_start, step.time) - gap, 0.0),
        duration_s=gap,
        state="gap",
        steps=[step.sequence],
        note=f"after {fmt.human_seconds(gap)}{was}",
    )


def tool_state(result: run_pb2.ToolCallFinished) -> str:
    """ok, failed, timed-out, cancelled, or unknown (a status this console's stubs do not know)."""
    if result.status in _ENDED_NORMALLY:
        return "failed" if result.is_error else "ok"
    return _TOOL_STATES.get(result.status, "unknown")


def tool_note(result: run_pb2.ToolCallFinished) -> str:
    state = tool_state(result)
    if state == "unknown":
        return fmt.tool_status_name(result.status)
    return _STATE_WORDS[state]


def finish_tool_bar(bar: Bar, step: run_pb2.ExecutionStep) -> None:
    result = step.tool_result
    bar.duration_s = fmt.seconds(result.duration) if result.HasField("duration") else fmt.seconds(step.duration)
    bar.state = tool_state(result)
    bar.note = tool_note(result)
    bar.steps.append(step.sequence)


def build(
    steps: Sequence[run_pb2.ExecutionStep],
    run_start: timestamp_pb2.Timestamp,
    *,
    run_end_s: float | None = None,
    live: bool = False,
) -> Waterfall:
    """The bars of `steps`. `run_end_s`: the run's duration when it has ended (unfinished calls end there); `live`:
    the run is going on (unfinished calls are running)."""
    bars: list[Bar] = []
    open_tools: dict[str, Bar] = {}
    for step in steps:
        kind = step.WhichOneof("payload")
        if kind == "model_call":
            bars.append(model_bar(step, run_start))
        elif kind == "resumed":
            bars.append(resumed_bar(step, run_start))
        elif kind == "tool_call":
            bar = tool_bar(step, run_start)
            bars.append(bar)
            open_tools[step.tool_call.call_id] = bar
        elif kind == "tool_result":
            started = open_tools.pop(step.tool_result.call_id, None)
            if started is None:  # a result without its start (not expected): draw it from its own step
                started = Bar(
                    key=f"tool-{step.tool_result.call_id or step.sequence}",
                    kind="tool",
                    label=step.tool_result.tool_name,
                    start_s=max(fmt.offset_s(run_start, step.time), 0.0),
                    duration_s=None,
                    state="running",
                    depth=1,
                )
                bars.append(started)
            finish_tool_bar(started, step)
    for bar in open_tools.values():
        if not live:
            bar.state = "no-result"
            bar.note = "no result recorded"
            bar.duration_s = max((run_end_s or bar.start_s) - bar.start_s, 0.0)
    # To the microsecond, then by step: a gap bar computed back from its step (time - gap) ties with the call it
    # interrupted up to float error, and must sort after it, as the live page places it.
    bars.sort(key=lambda bar: (round(bar.start_s, 6), bar.steps[0] if bar.steps else 0))
    span = max([bar.end_s for bar in bars] + [run_end_s or 0.0, 0.001])
    return Waterfall(bars=bars, span_s=span, ticks=ticks(span))


def nice_step(span_s: float, max_ticks: int = MAX_TICKS) -> float:
    """The smallest 1, 2 or 5 x 10^n step that divides `span_s` into at most `max_ticks` intervals."""
    raw = span_s / max_ticks
    exponent = math.floor(math.log10(raw)) if raw > 0 else -3
    for power in (exponent, exponent + 1):
        for base in _NICE_STEPS:
            step = base * 10.0**power
            if step >= raw:
                return step
    return 10.0 ** (exponent + 1)


def ticks(span_s: float) -> list[Tick]:
    step = nice_step(span_s)
    count = int(span_s / step + 1e-9)
    return [Tick(at_s=i * step, label=fmt.human_seconds(i * step) if i else "0") for i in range(count + 1)]


def bars_by_step(waterfall: Waterfall) -> dict[int, Bar]:
    """Each step's bar (a tool call's two steps share one)."""
    return {sequence: bar for bar in waterfall.bars for sequence in bar.steps}


def selected_bar(waterfall: Waterfall, sequence: int | None) -> Bar | None:
    return bars_by_step(waterfall).get(sequence) if sequence is not None else None
