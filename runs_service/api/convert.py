"""Protobuf <-> RunsService domain values for the query RPCs (runs themselves: agentrun_core.proto_convert)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from agentrun.runs.v1 import runs_service_pb2
from google.protobuf import timestamp_pb2

from agentrun_core.domain import Cost
from agentrun_core.proto_convert import (
    ConversionError,
    cost_to_pb,
    duration_to_pb,
    run_status_to_pb,
    run_to_pb,
    step_to_pb,
    timestamp_from_pb,
    timestamp_to_pb,
    token_usage_to_pb,
)
from runs_service.errors import InvalidArgument
from runs_service.queries import (
    Descendants,
    ExportBatch,
    GroupBy,
    RecordOutcome,
    RecordResult,
    RunPage,
    RunStatsRow,
    SessionPage,
    SessionSummary,
    StatsQuery,
    StepPage,
    ToolStatsRow,
)

_OUTCOMES = {
    RecordOutcome.CREATED: runs_service_pb2.RECORD_OUTCOME_CREATED,
    RecordOutcome.UPDATED: runs_service_pb2.RECORD_OUTCOME_UPDATED,
    RecordOutcome.UNCHANGED: runs_service_pb2.RECORD_OUTCOME_UNCHANGED,
    RecordOutcome.IGNORED: runs_service_pb2.RECORD_OUTCOME_IGNORED,
    RecordOutcome.REJECTED: runs_service_pb2.RECORD_OUTCOME_REJECTED,
}

_GROUP_BY = {
    runs_service_pb2.STATS_GROUP_BY_UNSPECIFIED: GroupBy.AGENT,
    runs_service_pb2.STATS_GROUP_BY_AGENT: GroupBy.AGENT,
    runs_service_pb2.STATS_GROUP_BY_MODEL: GroupBy.MODEL,
    runs_service_pb2.STATS_GROUP_BY_USER: GroupBy.USER,
    runs_service_pb2.STATS_GROUP_BY_DAY: GroupBy.DAY,
    runs_service_pb2.STATS_GROUP_BY_STATUS: GroupBy.STATUS,
    runs_service_pb2.STATS_GROUP_BY_SESSION: GroupBy.SESSION,
}


def is_full_view(view: int, field: str = "view") -> bool:
    if view in (runs_service_pb2.RUN_VIEW_UNSPECIFIED, runs_service_pb2.RUN_VIEW_BASIC):
        return False
    if view == runs_service_pb2.RUN_VIEW_FULL:
        return True
    raise InvalidArgument(field, f"unknown RunView value {view}; use RUN_VIEW_BASIC or RUN_VIEW_FULL")


def record_result_to_pb(result: RecordResult) -> runs_service_pb2.RecordRunResponse:
    if result.rejection is not None or result.stored_status is None:  # never from a single RecordRun
        raise AssertionError(f"RecordRun cannot answer {result}")
    return runs_service_pb2.RecordRunResponse(
        outcome=_OUTCOMES[result.outcome], stored_status=run_status_to_pb(result.stored_status)
    )


def record_results_to_pb(run_ids: list[str], results: list[RecordResult]) -> runs_service_pb2.RecordRunsResponse:
    response = runs_service_pb2.RecordRunsResponse()
    for run_id, result in zip(run_ids, results, strict=True):
        item = response.results.add(run_id=run_id, outcome=_OUTCOMES[result.outcome])
        if result.stored_status is not None:
            item.stored_status = run_status_to_pb(result.stored_status)
        if result.rejection is not None:
            item.rejection.reason = result.rejection.reason
            item.rejection.field = result.rejection.field
            item.rejection.message = result.rejection.message
    return response


# The most bytes of runs (or steps) one response carries, a larger one going alone: with the response's own fields
# and each item's tag and length, a response stays under 4 MiB, the default receive limit of gRPC clients (grpcio,
# grpc-js, grpc-go, grpc-java), so a client built from protos/ with default settings reads every page. Only a single
# run or step larger than that (a FULL run, up to AGENTRUN_MAX_RECORD_BYTES) needs a client with a larger limit.
REPLY_ITEMS_BYTES = 4 * 1024 * 1024 - 64 * 1024
# Each packed item's tag and length prefix (at most 1 + 5 bytes), counted against the budget.
_ITEM_OVERHEAD_BYTES = 6


def export_messages(batch: ExportBatch, max_bytes: int) -> Iterator[runs_service_pb2.ExportRunsResponse]:
    """An export batch as messages of at most `max_bytes` (one larger run goes alone), each with the cursor that
    resumes right after its last run; the batch's total_count goes in the first."""
    message = runs_service_pb2.ExportRunsResponse()
    if batch.total_count is not None:
        message.total_count = batch.total_count
    size = 0
    for index, run in enumerate(batch.runs):
        run_pb = run_to_pb(run)
        run_size = run_pb.ByteSize() + _ITEM_OVERHEAD_BYTES
        if message.runs and size + run_size > max_bytes:
            message.resume_cursor = batch.cursor_after(index - 1)
            yield message
            message = runs_service_pb2.ExportRunsResponse()
            size = 0
        message.runs.append(run_pb)
        size += run_size
    if message.runs:
        message.resume_cursor = batch.cursor_after(len(batch.runs) - 1)
        yield message
    elif not batch.runs and batch.total_count is not None:  # no run matches: the count alone, and where it began
        message.resume_cursor = batch.cursor_after(-1)
        yield message


def run_page_to_pb(page: RunPage, max_bytes: int) -> runs_service_pb2.ListRunsResponse:
    """A ListRuns page as one response of at most about `max_bytes` of runs: when the page's runs together are larger,
    the response holds the first of them (always at least one) and a next_page_token that continues right after the
    last one it holds."""
    response = runs_service_pb2.ListRunsResponse(next_page_token=page.next_page_token)
    size = 0
    for index, run in enumerate(page.runs):
        run_pb = run_to_pb(run)
        run_size = run_pb.ByteSize() + _ITEM_OVERHEAD_BYTES
        if response.runs and size + run_size > max_bytes:
            response.next_page_token = page.page_token_after(index - 1)
            break
        response.runs.append(run_pb)
        size += run_size
    return response


def descendants_to_pb(response: runs_service_pb2.GetRunResponse, descendants: Descendants, max_bytes: int) -> None:
    """GetRun's descendants into `response`, as many as fit with the run itself in `max_bytes` (at least one); when
    some are left out, for their number or their size, descendants_truncated is set."""
    size = response.run.ByteSize() + _ITEM_OVERHEAD_BYTES
    for run in descendants.runs:
        run_pb = run_to_pb(run)
        run_size = run_pb.ByteSize() + _ITEM_OVERHEAD_BYTES
        if response.descendants and size + run_size > max_bytes:
            response.descendants_truncated = True
            return
        response.descendants.append(run_pb)
        size += run_size
    response.descendants_truncated = descendants.truncated


def step_page_to_pb(page: StepPage, max_bytes: int) -> runs_service_pb2.ListRunStepsResponse:
    """A ListRunSteps page as one response of at most `max_bytes` of steps (at least one): when the page's steps
    together are larger, the response holds the first of them and a next_page_token that continues after its last."""
    response = runs_service_pb2.ListRunStepsResponse(next_page_token=page.next_page_token)
    size = 0
    for index, step in enumerate(page.steps):
        step_pb = step_to_pb(step)
        step_size = step_pb.ByteSize() + _ITEM_OVERHEAD_BYTES
        if response.steps and size + step_size > max_bytes:
            response.next_page_token = page.page_token_after(index - 1)
            break
        response.steps.append(step_pb)
        size += step_size
    return response


def _checked_time(value: timestamp_pb2.Timestamp, field: str) -> datetime:
    try:
        return timestamp_from_pb(value, field)
    except ConversionError as exc:
        raise InvalidArgument(field, exc.problem) from None


def time_range_from_pb(
    start: timestamp_pb2.Timestamp, end: timestamp_pb2.Timestamp, has_start: bool, has_end: bool
) -> tuple[datetime, datetime]:
    if not has_start:
        raise InvalidArgument("start_time", "is required: the stats cover runs started in [start_time, end_time)")
    if not has_end:
        raise InvalidArgument("end_time", "is required: the stats cover runs started in [start_time, end_time)")
    start_dt, end_dt = _checked_time(start, "start_time"), _checked_time(end, "end_time")
    if end_dt <= start_dt:
        raise InvalidArgument("end_time", f"must be after start_time ({start_dt.isoformat()})")
    return start_dt, end_dt


def stats_query_from_pb(request: runs_service_pb2.GetRunStatsRequest) -> StatsQuery:
    start, end = time_range_from_pb(
        request.start_time, request.end_time, request.HasField("start_time"), request.HasField("end_time")
    )
    try:
        group_by = _GROUP_BY[request.group_by]
    except KeyError:
        raise InvalidArgument("group_by", f"unknown StatsGroupBy value {request.group_by}") from None
    return StatsQuery(start_time=start, end_time=end, group_by=group_by, filter=request.filter)


def run_stats_to_pb(rows: list[RunStatsRow]) -> runs_service_pb2.GetRunStatsResponse:
    groups = []
    for row in rows:
        group = runs_service_pb2.RunStatsGroup(
            key=row.key,
            run_count=row.run_count,
            completed_count=row.completed_count,
            success_rate=row.success_rate,
            token_usage=token_usage_to_pb(row.token_usage),
            max_context_window_used=row.max_context_window_used,
        )
        if row.cost_total is not None:
            group.cost.CopyFrom(
                cost_to_pb(
                    Cost(
                        amount=row.cost_total,
                        currency_code=row.cost_currency or "USD",
                        price_table_version=row.price_table_version,
                    )
                )
            )
        group.cost_by_currency.extend(cost_to_pb(cost) for cost in row.costs_by_currency)
        if row.duration_p50 is not None:
            group.duration_p50.CopyFrom(duration_to_pb(row.duration_p50))
        if row.duration_p95 is not None:
            group.duration_p95.CopyFrom(duration_to_pb(row.duration_p95))
        groups.append(group)
    return runs_service_pb2.GetRunStatsResponse(groups=groups)


def tool_stats_to_pb(rows: list[ToolStatsRow]) -> runs_service_pb2.GetToolStatsResponse:
    tools = []
    for row in rows:
        stats = runs_service_pb2.ToolStats(
            tool_name=row.tool_name,
            server=row.server,
            call_count=row.call_count,
            error_count=row.error_count,
            error_rate=row.error_rate,
        )
        if row.duration_p50 is not None:
            stats.duration_p50.CopyFrom(duration_to_pb(row.duration_p50))
        if row.duration_p95 is not None:
            stats.duration_p95.CopyFrom(duration_to_pb(row.duration_p95))
        tools.append(stats)
    return runs_service_pb2.GetToolStatsResponse(tools=tools)


def session_to_pb(session: SessionSummary) -> runs_service_pb2.Session:
    msg = runs_service_pb2.Session(
        id=session.session_id,
        user=session.user,
        run_count=session.run_count,
        top_level_run_count=session.top_level_run_count,
        agent_names=list(session.agent_names),
        start_time=timestamp_to_pb(session.start_time),
        last_run_start_time=timestamp_to_pb(session.last_run_start_time),
        token_usage=token_usage_to_pb(session.token_usage),
        last_run_id=session.last_run_id,
    )
    if session.end_time is not None:
        msg.end_time.CopyFrom(timestamp_to_pb(session.end_time))
    if session.cost is not None:
        msg.cost.CopyFrom(cost_to_pb(session.cost))
    msg.cost_by_currency.extend(cost_to_pb(cost) for cost in session.cost_by_currency)
    if session.last_status is not None:
        msg.last_status = run_status_to_pb(session.last_status)
    return msg


def session_page_to_pb(page: SessionPage) -> runs_service_pb2.ListSessionsResponse:
    return runs_service_pb2.ListSessionsResponse(
        sessions=[session_to_pb(s) for s in page.sessions], next_page_token=page.next_page_token
    )
