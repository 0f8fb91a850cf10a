"""GET /stats: GetRunStats by day, agent, model and user, and GetToolStats, over a time range (default the last 30
days) and an optional filter (the runs page's language; a bad one shows the service's message next to the box)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
from agentrun.runs.v1 import runs_service_pb2 as runs_pb2
from starlette.requests import Request
from starlette.responses import Response

from agentrun_core.proto_convert import timestamp_to_pb
from agentrun_web.clients import ServiceCallError, Services
from agentrun_web.rendering import Renderer
from agentrun_web.security import caller_of
from agentrun_web.views import stats as sv

log = logging.getLogger(__name__)

GROUPINGS = (
    ("day", runs_pb2.STATS_GROUP_BY_DAY),
    ("agent", runs_pb2.STATS_GROUP_BY_AGENT),
    ("model", runs_pb2.STATS_GROUP_BY_MODEL),
    ("user", runs_pb2.STATS_GROUP_BY_USER),
)


async def stats_page(request: Request) -> Response:
    services: Services = request.app.state.services
    renderer: Renderer = request.app.state.renderer
    caller = caller_of(request)
    filter_text = request.query_params.get("filter", "").strip()
    context: dict[str, Any] = {
        "ranges": sv.RANGES,
        "filter": filter_text,
        "problem": "",
        "problem_field": "",
        "day_charts": [],
        "groups": {},
        "tools": [],
        "total_runs": 0,
    }
    try:
        span = sv.time_range(request.query_params)
    except sv.RangeError as exc:
        log.info("bad stats range", extra={"problem": str(exc)})
        span = sv.time_range({})
        context.update(problem=str(exc), problem_field="range")
        return renderer.page(request, "stats.html", status_code=400, span=span, **context)
    start, end = timestamp_to_pb(span.start), timestamp_to_pb(span.end)
    calls = [
        services.runs.run_stats(
            caller, runs_pb2.GetRunStatsRequest(start_time=start, end_time=end, group_by=group, filter=filter_text)
        )
        for _, group in GROUPINGS
    ]
    tool_call = services.runs.tool_stats(
        caller, runs_pb2.GetToolStatsRequest(start_time=start, end_time=end, filter=filter_text)
    )
    results = await asyncio.gather(*calls, tool_call, return_exceptions=True)
    failures = [result for result in results if isinstance(result, BaseException)]
    if failures:
        failure = failures[0]
        if not isinstance(failure, ServiceCallError) or failure.code is not grpc.StatusCode.INVALID_ARGUMENT:
            raise failure
        log.info("stats: the service refused the query", extra={**failure.log_context(), "filter": filter_text})
        context.update(problem=failure.details, problem_field="filter")
        return renderer.page(request, "stats.html", status_code=400, span=span, **context)
    answers = [result for result in results[:-1] if isinstance(result, runs_pb2.GetRunStatsResponse)]
    tools = results[-1]
    assert isinstance(tools, runs_pb2.GetToolStatsResponse)
    by = {name: answer.groups for (name, _), answer in zip(GROUPINGS, answers, strict=True)}
    context.update(
        day_charts=sv.day_charts(by["day"], span.days()),
        groups={name: sv.group_rows(by[name]) for name in ("agent", "model", "user")},
        tools=sv.tool_rows(tools.tools),
        total_runs=sum(group.run_count for group in by["agent"]),
    )
    return renderer.page(request, "stats.html", span=span, **context)
