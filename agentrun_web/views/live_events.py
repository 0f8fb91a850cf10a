"""What the live run page receives for each WatchRun event: the pieces of the page it adds or replaces, rendered by
the same templates as the finished run's page (so a live run and its stored record look the same).

- `queued`: the run waits in ExecutionService's admission queue (its place, the queue, how long it may wait, and
  its QUEUED status badge).
- `started`: the run's start time (bars are placed relative to it) and its RUNNING status badge.
- `step` (the SSE id is the step's sequence, so a reconnecting browser resumes after the last step it has): the
  step's row, its details for the side pane, a new waterfall bar (model call, tool call started) or the end of a
  tool call's bar (tool result: its duration and state), and a model call's token usage to add to the cards.
- `child_step` (no SSE id): a sub-agent run's step, as a row indented by its depth linking to that run's page.
- `finished`: the run's status, error, token cards, cost and final response as RunFinished tells them.
"""

from __future__ import annotations

from typing import Any

from agentrun.execution.v1 import execution_service_pb2 as ex_pb2
from agentrun.runs.v1 import run_pb2
from google.protobuf import timestamp_pb2

from agentrun_web.rendering import Renderer
from agentrun_web.views import format as fmt
from agentrun_web.views import waterfall as wf
from agentrun_web.views.run_details import TOKEN_CARDS, run_from_finished, run_from_queued, run_from_started, run_page
from agentrun_web.views.steps import kind_of, step_row


def started_event(renderer: Renderer, started: ex_pb2.RunStarted) -> dict[str, Any]:
    page = run_page(run_from_started(started), trace_link="")
    return {
        "run_id": started.run_id,
        "start": fmt.iso(started.start_time) if started.HasField("start_time") else "",
        "agent": started.agent_name,
        "model": started.model_name,
        "status": page.status,
        "status_html": renderer.fragment("_run_status.html", page=page),
    }


def queued_event(renderer: Renderer, queued: ex_pb2.RunQueued) -> dict[str, Any]:
    page = run_page(run_from_queued(queued), trace_link="")
    where = f"in queue {queued.queue_name}" if queued.queue_name else ""
    place = f"position {queued.position} {where}".strip() if queued.position else where
    limit = ""
    if queued.HasField("queue_timeout"):
        limit = f"; it waits at most {fmt.human_seconds(fmt.seconds(queued.queue_timeout))}"
    return {
        "run_id": queued.run_id,
        "position": queued.position,
        "queue": queued.queue_name,
        "message": f"queued ({place}): the run starts when an execution slot frees{limit}",
        "status": page.status,
        "status_html": renderer.fragment("_run_status.html", page=page),
    }


def step_event(
    renderer: Renderer, run_id: str, step: run_pb2.ExecutionStep, run_start: timestamp_pb2.Timestamp
) -> dict[str, Any]:
    kind = kind_of(step)
    event: dict[str, Any] = {
        "seq": step.sequence,
        "kind": kind,
        "row": renderer.fragment("_step_row.html", row=step_row(step, run_start), run_id=run_id),
        "detail": renderer.fragment("_step_detail.html", step=step, run_id=run_id),
    }
    bar: wf.Bar | None = None
    if kind == "model_call":
        bar = wf.model_bar(step, run_start)
        usage = step.model_call.usage
        event["usage"] = {name: getattr(usage, name) for _, name in TOKEN_CARDS}
        event["usage"]["total_tokens"] = fmt.total_tokens(usage)
    elif kind == "tool_call":
        bar = wf.tool_bar(step, run_start)
    elif kind == "resumed":
        bar = wf.resumed_bar(step, run_start)
    elif kind == "tool_result":
        result = step.tool_result
        duration = fmt.seconds(result.duration) if result.HasField("duration") else fmt.seconds(step.duration)
        event["finish"] = {
            "key": f"tool-{result.call_id or step.sequence}",
            "seq": step.sequence,
            "duration_s": duration,
            "duration_text": fmt.human_seconds(duration),
            "state": wf.tool_state(result),
            "note": wf.tool_note(result),
        }
    if bar is not None:
        event["bar"] = {"key": bar.key, "html": renderer.fragment("_waterfall_bar.html", bar=bar, run_id=run_id)}
    return event


def child_step_event(
    renderer: Renderer, step: run_pb2.ExecutionStep, run_start: timestamp_pb2.Timestamp
) -> dict[str, Any]:
    """A sub-agent run's step (depth > 0): its row, indented by its depth, linking to that run's page."""
    key = f"{step.run_id}-{step.sequence}"
    row = step_row(step, run_start)
    return {
        "key": key,
        "row": renderer.fragment("_child_step_row.html", row=row, step=step, key=key),
    }


def finished_event(
    renderer: Renderer, started: ex_pb2.RunStarted, finished: ex_pb2.RunFinished, *, trace_link: str
) -> dict[str, Any]:
    page = run_page(run_from_finished(started, finished), trace_link=trace_link)
    return {
        "status": page.status,
        "status_html": renderer.fragment("_run_status.html", page=page),
        "tokens_html": renderer.fragment("_run_tokens.html", page=page),
        "final_html": renderer.fragment("_run_final.html", page=page),
        "duration_s": fmt.seconds(finished.duration) if finished.HasField("duration") else None,
        "recorded": finished.recorded,
    }
