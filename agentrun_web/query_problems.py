"""What the runs page says when RunsService refuses its ListRuns filter.

The page asks with one filter: the box's, ANDed with the quick filters (`(typed) AND status = FAILED AND agent_name =
"x"`, views.run_list.RunsQuery.combined_filter). The service's message counts positions in that combined filter and
may quote its parentheses, which the person never typed. So when a query with quick filters is refused, the console
asks again with each part alone (these asks happen only for a refused query, never for one that works) and shows:

- the typed filter's own message (positions in what was typed) when the typed filter alone is refused;
- else the first quick filter refused alone, named by its box, without a position in a filter nobody typed;
- else (only the combination is refused) the service's message as it came.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import grpc
from agentrun.runs.v1 import runs_service_pb2 as runs_pb2

from agentrun_web.clients import Caller, RunsApi, ServiceCallError
from agentrun_web.views.run_list import RunsQuery

_POSITION = re.compile(r"\s*\(at position \d+\)\s*$")
_FILTER_PREFIX = "filter: "


@dataclass(frozen=True, slots=True)
class QueryProblem:
    field: str  # the form field it belongs to: "filter", "status", "agent", "model", or another request field
    message: str


def refused_filter(error: ServiceCallError) -> bool:
    """Whether the service refused the request's filter (not its page token or size)."""
    return error.code is grpc.StatusCode.INVALID_ARGUMENT and (
        error.reason == "INVALID_FILTER" or error.field == "filter"
    )


async def _refusal(runs: RunsApi, caller: Caller, filter_text: str) -> ServiceCallError | None:
    """The service's refusal of `filter_text` alone, or None when it accepts it (other failures propagate)."""
    try:
        await runs.list_runs(
            caller, runs_pb2.ListRunsRequest(filter=filter_text, page_size=1, view=runs_pb2.RUN_VIEW_BASIC)
        )
    except ServiceCallError as exc:
        if refused_filter(exc):
            return exc
        raise
    return None


async def problem_of_refused_query(
    runs: RunsApi, caller: Caller, query: RunsQuery, error: ServiceCallError
) -> QueryProblem:
    """What to show for `query`, whose ListRuns the service refused with `error` (INVALID_ARGUMENT)."""
    if not refused_filter(error):
        return QueryProblem(error.field or "", error.details)
    quick = query.quick_filter_terms()
    if not quick:  # the filter sent is the typed one: its positions are the person's
        return QueryProblem("filter", error.details)
    if query.filter:
        typed = await _refusal(runs, caller, query.filter)
        if typed is not None:
            return QueryProblem("filter", typed.details)
    for field, term in quick:
        refused = await _refusal(runs, caller, term)
        if refused is not None:
            return QueryProblem(field, f"{field}: {_POSITION.sub('', refused.details).removeprefix(_FILTER_PREFIX)}")
    return QueryProblem("filter", error.details)
