"""/start: start a run. Choose an agent (ListAgents; files that failed to load are listed with their problem), give
the task, the agent's variables and an optional model; ExecuteAgent with detach starts it and the browser lands on
the run's live page.

The form carries a run id made when it was shown, so sending it twice (a double click, a retry after a timeout)
reattaches to the same run instead of starting a second one. While RunsService is down ExecutionService cannot check
that id and refuses it; the run is then started under an id of its own (agentrun_web.started_forms).
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from agentrun.execution.v1 import execution_service_pb2 as ex_pb2
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from agentrun_core.ids import new_run_id, run_id_problem
from agentrun_web.clients import Caller, ServiceCallError, Services
from agentrun_web.errors import service_problem
from agentrun_web.rendering import Renderer
from agentrun_web.security import caller_of, checked_form
from agentrun_web.started_forms import StartedForms
from agentrun_web.views.agent_form import agent_choice, parse_labels, submitted_variables

log = logging.getLogger(__name__)

# ExecuteAgent's reason when it could not check a client-chosen run id (RunsService did not answer).
_RUN_ID_UNCHECKED = "RUNS_SERVICE_UNAVAILABLE"

_FORM_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


async def _form_page(
    request: Request,
    caller: Caller,
    *,
    selected: str,
    values: dict[str, Any],
    problem: str = "",
    status_code: int = 200,
) -> Response:
    services: Services = request.app.state.services
    renderer: Renderer = request.app.state.renderer
    reply = await services.execution.list_agents(caller)
    agents = sorted((agent_choice(agent) for agent in reply.agents), key=lambda agent: agent.name)
    if not selected and len(agents) == 1:
        selected = agents[0].name
    chosen = next((agent for agent in agents if agent.name == selected), None)
    if selected and chosen is None and not problem:
        problem, status_code = f"There is no agent named {selected!r}; choose one below.", 404
    return renderer.page(
        request,
        "start.html",
        status_code=status_code,
        agents=agents,
        broken=sorted(reply.errors, key=lambda error: error.path),
        chosen=chosen,
        values=values,
        run_id=values.get("run_id") or new_run_id(),
        problem=problem,
    )


async def start_page(request: Request) -> Response:
    caller = caller_of(request)
    return await _form_page(request, caller, selected=request.query_params.get("agent", ""), values={})


def _request_from(form: FormData) -> tuple[ex_pb2.ExecuteAgentRequest | None, str]:
    """The ExecuteAgent request the form asks for, or None and why not."""
    agent = str(form.get("agent") or "").strip()
    run_id = str(form.get("run_id") or "").strip()
    if not agent:
        return None, "Choose an agent."
    if run_id_problem(run_id) is not None:
        return None, "This form is out of date; it was shown again with a new run id. Send it again."
    try:
        labels = parse_labels(str(form.get("labels") or ""))
    except ValueError as exc:
        return None, str(exc)
    request = ex_pb2.ExecuteAgentRequest(
        agent_name=agent,
        task=str(form.get("task") or ""),
        variables=submitted_variables(form),
        labels=labels,
        run_id=run_id,
        model=str(form.get("model") or "").strip(),
        detach=True,
    )
    return request, ""


async def start_run(request: Request) -> Response:
    form = await checked_form(request)
    caller = caller_of(request)
    services: Services = request.app.state.services
    values = {key: str(value) for key, value in form.items() if key != "csrf_token"}
    selected = values.get("agent", "")
    execute, problem = _request_from(form)
    if execute is None:
        if run_id_problem(values.get("run_id", "")) is not None:
            values.pop("run_id", None)  # shown again with a fresh run id
        return await _form_page(request, caller, selected=selected, values=values, problem=problem, status_code=400)
    forms: StartedForms = request.app.state.started_forms
    form_run_id = execute.run_id
    try:
        async with forms.sending(form_run_id):
            if (known := forms.run_of(form_run_id)) is not None:  # sent before, while RunsService was down
                return RedirectResponse(f"/runs/{known}", status_code=303)
            try:
                started = await services.execution.start_run(caller, execute)
            except ServiceCallError as exc:
                if exc.code is not grpc.StatusCode.UNAVAILABLE or exc.reason != _RUN_ID_UNCHECKED:
                    raise
                log.info(
                    "RunsService cannot check the form's run id: starting the run under a new one",
                    extra={"form_run_id": form_run_id},
                )
                execute.ClearField("run_id")
                started = await services.execution.start_run(caller, execute)
                forms.remember(form_run_id, started.run_id)
    except ServiceCallError as exc:
        if exc.code is grpc.StatusCode.UNAUTHENTICATED:
            raise
        if exc.code is grpc.StatusCode.ALREADY_EXISTS:  # this form was sent before and its run has ended
            return RedirectResponse(f"/runs/{form_run_id}", status_code=303)
        log.info("start refused", extra={**exc.log_context(), "agent": execute.agent_name})
        found = service_problem(exc, request)
        message = found.message + (f" {found.hint}" if found.hint else "")
        status = _FORM_STATUS.get(exc.code, 502)
        return await _form_page(request, caller, selected=selected, values=values, problem=message, status_code=status)
    log.info("run started from the console", extra={"run_id": started.run_id, "agent": started.agent_name})
    return RedirectResponse(f"/runs/{started.run_id}", status_code=303)
