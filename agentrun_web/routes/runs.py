"""GET /: the runs page (ListRuns). With X-Agentrun-Fragment the rows only (the page's script asks for them every
few seconds, so runs that start or end appear without a reload; an unchanged answer is a 304)."""

from __future__ import annotations

import hashlib
import logging

import grpc
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from agentrun_web.agent_names import AgentNames
from agentrun_web.clients import ServiceCallError, Services
from agentrun_web.query_problems import problem_of_refused_query
from agentrun_web.rendering import Renderer
from agentrun_web.security import caller_of, settings_of, wants_fragment
from agentrun_web.views import format as fmt
from agentrun_web.views.run_list import ORDERS, RunsQuery, run_row

log = logging.getLogger(__name__)


async def runs_page(request: Request) -> Response:
    services: Services = request.app.state.services
    renderer: Renderer = request.app.state.renderer
    caller = caller_of(request)
    problem_field, problem = "", ""
    # A value the page cannot use is dropped (and named); the rest of the view stays in the form.
    query, bad_values = RunsQuery.parse(request.query_params)
    for bad in bad_values:
        log.info("bad runs page query", extra={"field": bad.field, "problem": str(bad)})
    if bad_values:
        problem_field, problem = bad_values[0].field, "; ".join(str(bad) for bad in bad_values)
    rows, next_url = [], None
    if not problem:
        try:
            reply = await services.runs.list_runs(caller, query.request())
            rows = [run_row(run) for run in reply.runs]
            next_url = query.next_url(reply.next_page_token) if reply.next_page_token else None
        except ServiceCallError as exc:
            if exc.code is not grpc.StatusCode.INVALID_ARGUMENT:
                raise
            # A bad filter (INVALID_FILTER) or page token: the service's own message, next to the box it is about.
            log.info("runs page: the service refused the query", extra={**exc.log_context(), "filter": query.filter})
            refused = await problem_of_refused_query(services.runs, caller, query, exc)
            problem_field, problem = refused.field, refused.message
    if wants_fragment(request):
        html = renderer.fragment("_run_rows.html", rows=rows, problem=problem)
        etag = '"' + hashlib.sha1(html.encode(), usedforsecurity=False).hexdigest() + '"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"etag": etag})
        return HTMLResponse(html, status_code=200 if not problem else 400, headers={"etag": etag})
    agent_names: AgentNames = request.app.state.agent_names
    names = await agent_names.get(services.execution, caller)
    return renderer.page(
        request,
        "runs.html",
        status_code=200 if not problem else 400,
        query=query,
        rows=rows,
        next_url=next_url,
        previous_url=query.previous_url(),
        problem=problem,
        problem_field=problem_field,
        statuses=fmt.run_statuses(),
        orders=ORDERS,
        agents=names.agents,
        models=names.models,
        # A query the service refused is not asked again every few seconds.
        refresh_ms=0 if problem else int(settings_of(request).refresh_s * 1000),
    )
