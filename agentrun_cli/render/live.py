"""The live view of a streamed run: permanent lines for finished steps, spinners for tool calls in flight,
and a footer with the running token count and elapsed time."""

from __future__ import annotations

import time

from agentrun.execution.v1 import execution_service_pb2 as ex_pb2
from agentrun.runs.v1 import run_pb2
from rich.console import Group, RenderableType
from rich.spinner import Spinner
from rich.text import Text

from agentrun_cli.progress import RunProgress
from agentrun_cli.render import format as fmt
from agentrun_cli.render import steps as st


def started_line(started: ex_pb2.RunStarted) -> Text:
    agent = started.agent_name + (f"@{fmt.short_version(started.agent_version)}" if started.agent_version else "")
    line = Text.assemble(("▶ run ", "bold"), (started.run_id, "bold cyan"), f" · {agent} · {started.model_name}")
    if started.session_id:
        line.append(f" · session {started.session_id}")
    if started.HasField("forked_from"):
        line.append(f" · fork of {started.forked_from.run_id} after step {started.forked_from.sequence}")
    if started.trace_id:
        line.append(f" · trace {started.trace_id}", style="dim")
    return line


def started_plain(started: ex_pb2.RunStarted) -> str:
    return started_line(started).plain


def queued_line(queued: ex_pb2.RunQueued) -> Text:
    agent = queued.agent_name + (f"@{fmt.short_version(queued.agent_version)}" if queued.agent_version else "")
    line = Text.assemble(("⏸ run ", "bold"), (queued.run_id, "bold blue"), f" · {agent} · queued")
    where = f" in {queued.queue_name}" if queued.queue_name else ""
    if queued.position:
        line.append(f" · position {queued.position}{where}")
    elif where:
        line.append(f" ·{where}")
    if queued.HasField("queue_timeout"):
        line.append(f" · waits at most {fmt.duration(queued.queue_timeout)}", style="dim")
    return line


def queued_plain(queued: ex_pb2.RunQueued) -> str:
    return queued_line(queued).plain


def _call_label(call: run_pb2.ToolCallStarted) -> str:
    arguments = fmt.truncate(fmt.compact_json(call.arguments_json), st.ARGUMENTS_PREVIEW_CHARS)
    return f"{fmt.tool_label(call.tool_name, call.server)} {arguments}".rstrip()


# How far a sub-agent's steps are indented per level of depth.
INDENT = "  "


def live_step_line(step: run_pb2.ExecutionStep, progress: RunProgress) -> Text | None:
    """The permanent line a finished step leaves above the live area (None for a tool call: it is a spinner
    until its result arrives). A sub-agent's steps (depth > 0) are indented by their depth."""
    line = _step_line(step, progress)
    if line is None or step.depth == 0:
        return line
    return Text(INDENT * step.depth) + line


def _step_line(step: run_pb2.ExecutionStep, progress: RunProgress) -> Text | None:
    kind = step.WhichOneof("payload")
    if kind == "model_call":
        return Text.assemble(("◆ ", "blue"), ("model turn ", "bold"), st.model_call_summary(step.model_call))
    if kind == "tool_result":
        result = step.tool_result
        call = progress.calls.get((step.run_id, result.call_id))
        label = _call_label(call) if call is not None else result.tool_name
        ok = st.tool_succeeded(result)
        line = Text.assemble(
            (st.OK_MARK if ok else st.ERROR_MARK, "green" if ok else "red"),
            f" {label} ",
            (fmt.duration(result.duration), "dim"),
        )
        preview = fmt.truncate(result.result_text or result.result_json, 80)
        if preview:
            line.append(f" → {preview}", style="dim" if ok else "red")
        return line
    if kind == "final_response":
        if step.depth:
            return Text.assemble(("■ ", "green"), ("sub-agent answered", "bold"), (f" · run {step.run_id}", "dim"))
        return Text.assemble(("■ ", "green"), ("final response", "bold"))
    if kind == "error":
        return Text.assemble(("✗ ", "red"), (f"{step.error.reason}: {step.error.message}", "red"))
    return None


def footer(progress: RunProgress, now: float | None = None) -> Text:
    tokens = fmt.total_tokens(progress.usage)
    return Text(
        f"{fmt.plural(tokens, 'token')} · {fmt.plural(progress.model_turns, 'turn')} · "
        f"{fmt.plural(progress.tool_calls, 'tool call')} · "
        f"{fmt.human_seconds(progress.elapsed(now))}",
        style="dim",
    )


def live_area(progress: RunProgress, now: float | None = None) -> RenderableType:
    """What the live region shows right now: one spinner per tool call in flight, then the footer."""
    at = time.monotonic() if now is None else now
    rows: list[RenderableType] = []
    for flight in progress.in_flight.values():
        waited = fmt.human_seconds(max(at - flight.started_at, 0.0))
        label = Text.assemble(INDENT * flight.depth, _call_label(flight.call), (f" {waited}", "dim"))
        rows.append(Spinner("dots", text=label))
    if progress.waiting_in_queue:
        rows.append(Spinner("dots", text=Text("waiting in the queue for a free slot…", style="dim")))
    elif progress.finished is None and not progress.in_flight:
        rows.append(Spinner("dots", text=Text("waiting for the model…", style="dim")))
    rows.append(footer(progress, at))
    return Group(*rows)
