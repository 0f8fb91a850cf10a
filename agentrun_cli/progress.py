"""The state of a streamed run as events arrive: what the live view and the summary are drawn from."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from agentrun.execution.v1 import execution_service_pb2 as ex_pb2
from agentrun.runs.v1 import run_pb2

StreamEvent = ex_pb2.ExecuteAgentResponse | ex_pb2.WatchRunResponse | ex_pb2.ForkRunResponse


@dataclass
class InFlightCall:
    call: run_pb2.ToolCallStarted
    started_at: float
    # 0 for the run's own call, 1 for a sub-agent's (a child run's), 2 for a grandchild's...
    depth: int = 0


# A tool call of the run or of one of its child runs: (run id, call id).
CallKey = tuple[str, str]


@dataclass
class RunProgress:
    # Set when the run had to wait in the execution service's queue (run_queued came first).
    queued: ex_pb2.RunQueued | None = None
    started: ex_pb2.RunStarted | None = None
    finished: ex_pb2.RunFinished | None = None
    # The run's own last step (its children's steps, depth > 0, are numbered in their own runs).
    last_sequence: int = 0
    # The last step received, at any depth (run id, sequence): a reattach after it misses nothing and repeats nothing.
    last_step: tuple[str, int] | None = None
    # The last step received of each run (this one and its sub-agents' runs): WatchRun.last_received goes on past
    # them through any replica.
    last_received: dict[str, int] = field(default_factory=dict)
    steps_seen: int = 0
    # Model turns, tool calls and tokens of the whole tree: the run's and its sub-agents' runs'.
    model_turns: int = 0
    tool_calls: int = 0
    usage: run_pb2.TokenUsage = field(default_factory=run_pb2.TokenUsage)
    in_flight: dict[CallKey, InFlightCall] = field(default_factory=dict)
    # Arguments of every call seen, so a result line can show what was asked.
    calls: dict[CallKey, run_pb2.ToolCallStarted] = field(default_factory=dict)
    opened_at: float = field(default_factory=time.monotonic)

    @property
    def run_id(self) -> str:
        if self.started is not None:
            return self.started.run_id
        if self.queued is not None:
            return self.queued.run_id
        return self.finished.run_id if self.finished is not None else ""

    @property
    def waiting_in_queue(self) -> bool:
        return self.queued is not None and self.started is None and self.finished is None

    def elapsed(self, now: float | None = None) -> float:
        if self.finished is not None and self.finished.HasField("duration"):
            return self.finished.duration.seconds + self.finished.duration.nanos / 1e9
        return (time.monotonic() if now is None else now) - self.opened_at

    def apply(self, event: StreamEvent) -> None:
        kind = event.WhichOneof("event")
        if kind == "run_queued":
            self.queued = event.run_queued
        elif kind == "run_started":
            self.started = event.run_started
        elif kind == "step":
            self.apply_step(event.step)
        elif kind == "run_finished":
            self.finished = event.run_finished
            self.in_flight.clear()

    def apply_step(self, step: run_pb2.ExecutionStep) -> None:
        self.steps_seen += 1
        self.last_step = (step.run_id, step.sequence)
        self.last_received[step.run_id] = max(self.last_received.get(step.run_id, 0), step.sequence)
        if step.depth == 0:
            self.last_sequence = max(self.last_sequence, step.sequence)
        kind = step.WhichOneof("payload")
        if kind == "model_call":
            self.model_turns += 1
            _add_usage(self.usage, step.model_call.usage)
        elif kind == "tool_call":
            self.tool_calls += 1
            key = (step.run_id, step.tool_call.call_id)
            self.calls[key] = step.tool_call
            self.in_flight[key] = InFlightCall(step.tool_call, time.monotonic(), step.depth)
        elif kind == "tool_result":
            self.in_flight.pop((step.run_id, step.tool_result.call_id), None)


def _add_usage(total: run_pb2.TokenUsage, more: run_pb2.TokenUsage) -> None:
    total.input_tokens += more.input_tokens
    total.output_tokens += more.output_tokens
    total.total_tokens += more.total_tokens
    total.cached_tokens += more.cached_tokens
    total.thinking_tokens += more.thinking_tokens
    total.tool_use_prompt_tokens += more.tool_use_prompt_tokens
