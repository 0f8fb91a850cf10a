"""RunsService gRPC servicer: translates requests to repository calls and results back. No logic of its own."""

from __future__ import annotations

import grpc
from agentrun.runs.v1 import runs_service_pb2, runs_service_pb2_grpc

from agentrun_core.identity import current_identity
from agentrun_core.ids import run_id_problem
from agentrun_core.proto_convert import run_from_pb, run_to_pb, step_to_pb
from runs_service.api.convert import (
    is_full_view,
    record_result_to_pb,
    run_stats_to_pb,
    session_page_to_pb,
    stats_query_from_pb,
    time_range_from_pb,
    tool_stats_to_pb,
)
from runs_service.api.errors import translate_errors
from runs_service.errors import InvalidArgument, PermissionDenied, RunNotFound
from runs_service.queries import ListRunsQuery, ListSessionsQuery, Scope
from runs_service.storage.repository import RunRepository
from runs_service.validation import validate_run


def _caller_scope() -> Scope:
    identity = current_identity.get()
    return Scope.everything() if identity.sees_everything else Scope(user=identity.user)


def _checked_run_id(value: str, field: str = "run_id") -> str:
    problem = run_id_problem(value)
    if problem is not None:
        raise InvalidArgument(field, problem)
    return value


class RunsServicer(runs_service_pb2_grpc.RunsServiceServicer):
    def __init__(self, repository: RunRepository, *, max_record_bytes: int) -> None:
        self._repository = repository
        self._max_record_bytes = max_record_bytes

    @translate_errors
    async def RecordRun(
        self, request: runs_service_pb2.RecordRunRequest, context: grpc.aio.ServicerContext
    ) -> runs_service_pb2.RecordRunResponse:
        if not current_identity.get().may_record_runs:
            raise PermissionDenied("RecordRun is reserved to the execution service and admins")
        size = request.ByteSize()
        if size > self._max_record_bytes:
            raise InvalidArgument(
                "run",
                f"the record is {size} bytes, over the cap of {self._max_record_bytes} bytes "
                "(AGENTRUN_MAX_RECORD_BYTES); truncate large tool results before recording",
            )
        if not request.HasField("run"):
            raise InvalidArgument("run", "is required")
        try:
            run = run_from_pb(request.run)
        except OverflowError:
            # A Timestamp/Duration beyond what datetime holds (years 1-9999): bad input, not a server fault.
            raise InvalidArgument("run", "holds a timestamp or duration out of range (years 1-9999)") from None
        validate_run(run)
        result = await self._repository.record_run(run)
        return record_result_to_pb(result)

    @translate_errors
    async def GetRun(
        self, request: runs_service_pb2.GetRunRequest, context: grpc.aio.ServicerContext
    ) -> runs_service_pb2.GetRunResponse:
        run_id = _checked_run_id(request.run_id)
        full = is_full_view(request.view)
        scope = _caller_scope()
        run = await self._repository.get_run(run_id, full=full, scope=scope)
        if run is None:
            raise RunNotFound(run_id)
        response = runs_service_pb2.GetRunResponse(run=run_to_pb(run))
        if request.include_descendants:
            descendants = await self._repository.get_descendants(run, scope)
            response.descendants.extend(run_to_pb(d) for d in descendants.runs)
            response.descendants_truncated = descendants.truncated
        return response

    @translate_errors
    async def ListRuns(
        self, request: runs_service_pb2.ListRunsRequest, context: grpc.aio.ServicerContext
    ) -> runs_service_pb2.ListRunsResponse:
        query = ListRunsQuery(
            filter=request.filter,
            order_by=request.order_by,
            page_size=request.page_size,
            page_token=request.page_token,
            full=is_full_view(request.view),
        )
        page = await self._repository.list_runs(query, _caller_scope())
        return runs_service_pb2.ListRunsResponse(
            runs=[run_to_pb(r) for r in page.runs], next_page_token=page.next_page_token
        )

    @translate_errors
    async def ListRunSteps(
        self, request: runs_service_pb2.ListRunStepsRequest, context: grpc.aio.ServicerContext
    ) -> runs_service_pb2.ListRunStepsResponse:
        run_id = _checked_run_id(request.run_id)
        page = await self._repository.list_steps(run_id, request.page_size, request.page_token, _caller_scope())
        return runs_service_pb2.ListRunStepsResponse(
            steps=[step_to_pb(s) for s in page.steps], next_page_token=page.next_page_token
        )

    @translate_errors
    async def GetRunStats(
        self, request: runs_service_pb2.GetRunStatsRequest, context: grpc.aio.ServicerContext
    ) -> runs_service_pb2.GetRunStatsResponse:
        rows = await self._repository.run_stats(stats_query_from_pb(request), _caller_scope())
        return run_stats_to_pb(rows)

    @translate_errors
    async def GetToolStats(
        self, request: runs_service_pb2.GetToolStatsRequest, context: grpc.aio.ServicerContext
    ) -> runs_service_pb2.GetToolStatsResponse:
        start, end = time_range_from_pb(
            request.start_time, request.end_time, request.HasField("start_time"), request.HasField("end_time")
        )
        rows = await self._repository.tool_stats(start, end, request.filter, _caller_scope())
        return tool_stats_to_pb(rows)

    @translate_errors
    async def ListSessions(
        self, request: runs_service_pb2.ListSessionsRequest, context: grpc.aio.ServicerContext
    ) -> runs_service_pb2.ListSessionsResponse:
        query = ListSessionsQuery(
            filter=request.filter,
            order_by=request.order_by,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        page = await self._repository.list_sessions(query, _caller_scope())
        return session_page_to_pb(page)
