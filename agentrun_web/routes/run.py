"""A run's page (/runs/{run_id}), one step's details for the side pane, and cancelling a live run.

The page comes from GetRun (BASIC, with the sub-agent runs) and ListRunSteps (page by page); a step's details from
ListRunSteps up to that step. A run RunsService does not have yet (just started: its RUNNING record is still on
its way through the outbox) is looked up on ExecutionService (WatchRun's RunStarted) before the page says "not
found"; both services answer NOT_FOUND for another user's run, so it is neither shown nor told apart from a run
that does not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import grpc
from agentrun.execution.v1 import execution_service_pb2 as ex_pb2
from agentrun.runs.v1 import runs_service_pb2 as runs_pb2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from agentrun_web.clients import Caller, ServiceCallError, Services
from agentrun_web.rendering import Renderer
from agentrun_web.security import caller_of, checked_form, settings_of, wants_fragment
from agentrun_web.views import waterfall as wf
from agentrun_web.views.run_details import run_from_queued, run_from_started, run_page
from agentrun_web.views.steps import find_steps

log = logging.getLogger(__name__)

# How long the page waits for ExecutionService to say whether it runs a run RunsService does not know.
LIVE_PROBE_TIMEOUT_S = 2.0
# What the run page says when a cancel without a script brings the browser back (?cancel=...).
CANCEL_NOTICES = {
    "requested": "Cancel requested.",
    "refused": "The run could not be cancelled (it has ended, or runs elsewhere).",
}
# Beyond any real sequence: a probe asks for RunStarted only, not for the steps.
_NO_STEPS = 2**31 - 1


async def _live_run_started(
    services: Services, caller: Caller, run_id: str
) -> ex_pb2.RunStarted | ex_pb2.RunQueued | None:
    """RunStarted (RunQueued while it waits for a slot) of a run live on ExecutionService, or None (not live there,
    another user's, or unreachable)."""
    try:
        async with (
            asyncio.timeout(LIVE_PROBE_TIMEOUT_S),
            contextlib.aclosing(services.execution.watch(caller, run_id, _NO_STEPS)) as events,
        ):
            async for event in events:  # closed on return: the stream ends at once
                if event.WhichOneof("event") == "run_started":
                    return event.run_started
                if event.WhichOneof("event") == "run_queued":
                    return event.run_queued
    except ServiceCallError as exc:
        if exc.code is not grpc.StatusCode.NOT_FOUND:
            log.info("could not ask ExecutionService about a run RunsService does not know", extra=exc.log_context())
    except TimeoutError:
        log.info("ExecutionService did not say in time whether it runs this run", extra={"run_id": run_id})
    return None


# RunsService's answers after which the page asks ExecutionService whether the run is live: not stored yet, or
# RunsService cannot say now (a live run is shown from its stream all the same).
_ASK_EXECUTION = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


@dataclass(frozen=True, slots=True)
class LoadedRun:
    reply: runs_pb2.GetRunResponse
    # False: the live run as far as its RunStarted (or RunQueued) tells, its record not read.
    stored: bool
    # Why the record was not read when RunsService could not answer (its error), else "".
    runs_problem: str = ""


async def load_run(services: Services, caller: Caller, run_id: str) -> LoadedRun:
    """The stored run with its sub-agent runs, or (not stored yet, or RunsService unavailable) the live run as far as
    RunStarted tells; ServiceCallError otherwise (RunsService's, when the run is not live either)."""
    try:
        # The run in the BASIC view, then its steps page by page: a run of thousands of steps is never one message.
        reply = await services.runs.get_run_tree(caller, run_id, full=False)
        reply.run.execution_steps.extend(await services.runs.steps(caller, reply.run.id))
        return LoadedRun(reply, stored=True)
    except ServiceCallError as exc:
        if exc.code not in _ASK_EXECUTION:
            raise
        started = await _live_run_started(services, caller, run_id)
        if started is None:
            raise
        problem = "" if exc.code is grpc.StatusCode.NOT_FOUND else f"{exc.code.name}: {exc.details}"
        if isinstance(started, ex_pb2.RunQueued):
            return LoadedRun(runs_pb2.GetRunResponse(run=run_from_queued(started)), False, problem)
        return LoadedRun(runs_pb2.GetRunResponse(run=run_from_started(started)), False, problem)


def _selected_step(request: Request) -> int | None:
    raw = request.query_params.get("step", "")
    return int(raw) if raw.isdigit() else None


async def run_details(request: Request) -> Response:
    services: Services = request.app.state.services
    renderer: Renderer = request.app.state.renderer
    caller = caller_of(request)
    loaded = await load_run(services, caller, request.path_params["run_id"])
    reply = loaded.reply
    run = reply.run
    page = run_page(
        run,
        trace_link=settings_of(request).trace_link(run.trace_id),
        descendants=reply.descendants,
        descendants_truncated=reply.descendants_truncated,
    )
    asked = _selected_step(request)
    selected = wf.selected_bar(page.waterfall, asked)
    cancel_notice = request.query_params.get("cancel", "")
    cancel_notice = cancel_notice if cancel_notice in CANCEL_NOTICES else ""
    # A bar's steps (a tool call's start and result), or a step without a bar (an answer, an error) on its own.
    selected_steps = find_steps(run.execution_steps, selected.steps if selected is not None else [asked or 0])
    return renderer.page(
        request,
        "run.html",
        page=page,
        run=run,
        run_id=run.id,
        stored=loaded.stored,
        runs_problem=loaded.runs_problem,
        runs_target=services.runs.endpoint.target if loaded.runs_problem else "",
        selected=selected,
        asked_step=asked,
        bad_step=request.query_params.get("step", "") if asked is None else "",
        selected_steps=selected_steps,
        cancel_notice=cancel_notice,
        cancel_text=CANCEL_NOTICES.get(cancel_notice, ""),
        live_first_event_s=settings_of(request).live_first_event_s,
    )


async def step_detail(request: Request) -> Response:
    """One step's details (the side pane's content), as a fragment."""
    services: Services = request.app.state.services
    renderer: Renderer = request.app.state.renderer
    caller = caller_of(request)
    run_id = request.path_params["run_id"]
    sequence = request.path_params["sequence"]
    found = find_steps(await services.runs.steps(caller, run_id, until=sequence), [sequence])
    if not found:
        return HTMLResponse(renderer.fragment("_missing_step.html", sequence=sequence, run_id=run_id), status_code=404)
    return HTMLResponse(renderer.fragment("_step_detail.html", step=found[0], run_id=run_id))


async def cancel_run(request: Request) -> Response:
    """CancelRun (immediately, or after the current turn). The page's script posts it in the background and the
    run's end arrives on its event stream; without a script the browser comes back to the run page."""
    services: Services = request.app.state.services
    renderer: Renderer = request.app.state.renderer
    form = await checked_form(request)
    caller = caller_of(request)
    run_id = request.path_params["run_id"]
    after_turn = form.get("mode") == "after_turn"
    try:
        await services.execution.cancel_run(caller, run_id, after_turn=after_turn)
    except ServiceCallError as exc:
        if exc.code not in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
            raise
        log.info("cancel refused", extra={**exc.log_context(), "run_id": run_id})
        message = (
            "The run has already ended."
            if exc.code is grpc.StatusCode.FAILED_PRECONDITION
            else f"ExecutionService does not run this run ({exc.details})."
        )
        if wants_fragment(request):
            return HTMLResponse(renderer.fragment("_notice.html", text=message, tone="warn"), status_code=409)
        return RedirectResponse(f"/runs/{run_id}?cancel=refused", status_code=303)
    log.info("cancel requested", extra={"run_id": run_id, "after_turn": after_turn})
    text = "Cancel requested: the run stops after its current turn." if after_turn else "Cancel requested."
    if wants_fragment(request):
        return HTMLResponse(renderer.fragment("_notice.html", text=text, tone="info"))
    return RedirectResponse(f"/runs/{run_id}?cancel=requested", status_code=303)
