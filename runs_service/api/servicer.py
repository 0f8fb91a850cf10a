"""RunsService gRPC servicer: translates requests to repository calls and results back. No logic of its own."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
from agentrun.runs.v1 import runs_service_pb2, runs_service_pb2_grpc

from agentrun_core.identity import current_identity
from agentrun_core.ids import run_id_problem
from agentrun_core.proto_convert import run_to_pb
from runs_service import recording
from runs_service.api.convert import (
    REPLY_ITEMS_BYTES,
    descendants_to_pb,
    export_messages,
    is_full_view,
    record_result_to_pb,
    record_results_to_pb,
    run_page_to_pb,
    run_stats_to_pb,
    session_page_to_pb,
    stats_query_from_pb,
    step_page_to_pb,
    time_range_from_pb,
    tool_stats_to_pb,
)
from runs_service.api.errors import translate_errors, translate_stream_errors
from runs_service.api.run_rows import rows_from_pb
from runs_service.api.schedules import (
    check_schedule_caller,
    claim_from_pb,
    claim_result_to_pb,
    listed_schedules,
    pause_from_pb,
    state_to_pb,
)
from runs_service.errors import InvalidArgument, PermissionDenied, RunNotFound
from runs_service.queries import DeleteRunsQuery, ExportQuery, ListRunsQuery, ListSessionsQuery, Scope
from runs_service.storage.repository import RunRepository
from runs_service.storage.rows import RunRows
from runs_service.storage.schedules import ScheduleRepository

log = logging.getLogger(__name__)


def _caller_scope() -> Scope:
    identity = current_identity.get()
    return Scope.everything() if identity.sees_everything else Scope(user=identity.user)


def _checked_run_id(value: str, field: str = "run_id") -> str:
    problem = run_id_problem(value)
    if problem is not None:
        raise InvalidArgument(field, problem)
    return value


class RunsServicer(runs_service_pb2_grpc.RunsServiceServicer):
    def __init__(self, repository: RunRepository, *, max_record_bytes: int, max_message_bytes: int = 16 << 20) -> None:
        self._repository = repository
        self._schedules = ScheduleRepository(repository.engine)
        self._max_record_bytes = max_record_bytes
        # ExportRuns messages, ListRuns pages and GetRun's descendants stay well under the gRPC message cap (a single
        # larger run is still sent alone).
        self._max_runs_message_bytes = min(REPLY_ITEMS_BYTES, max_message_bytes // 2)

    def _record_rows(self, request: runs_service_pb2.RecordRunRequest) -> RunRows:
        """The rows of one record (InvalidArgument naming the field when the message cannot be stored as rows)."""
        size = request.ByteSize()
        if size > self._max_record_bytes:
            raise InvalidArgument(
                "run",
                f"the record is {size} bytes, over the cap of {self._max_record_bytes} bytes "
                "(AGENTRUN_MAX_RECORD_BYTES); truncate large tool results before recording",
            )
        if not request.HasField("run"):
            raise InvalidArgument("run", "is required")
        return rows_from_pb(request.run)

    @translate_errors
    async def RecordRun(
        self, request: runs_service_pb2.RecordRunRequest, context: grpc.aio.ServicerContext
    ) -> runs_service_pb2.RecordRunResponse:
        if not current_identity.get().may_record_runs:
            raise PermissionDenied("RecordRun is reserved to the execution service and admins")
        result = await recording.record_run(self._repository, self._record_rows(request))
        return record_result_to_pb(result)

    @translate_errors
    async def RecordRuns(
        self, request: runs_service_pb2.RecordRunsRequest, context: grpc.aio.ServicerContext
    ) -> runs_service_pb2.RecordRunsResponse:
        if not current_identity.get().may_record_runs:
            raise PermissionDenied("RecordRuns is reserved to the execution service and admins")
        recording.check_batch_size(len(request.requests))
        results = await recording.record_runs(self._repository, [self._translated(item) for item in request.requests])
        return record_results_to_pb([item.run.id for item in request.requests], results)

    def _translated(self, request: runs_service_pb2.RecordRunRequest) -> recording.Translated:
        try:
            return self._record_rows(request)
        except InvalidArgument as exc:
            return exc

    @translate_stream_errors
    async def ExportRuns(
        self, request: runs_service_pb2.ExportRunsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[runs_service_pb2.ExportRunsResponse]:
        query = ExportQuery(
            filter=request.filter,
            full=is_full_view(request.view),
            resume_cursor=request.resume_cursor,
            count_total=request.count_total,
        )
        async for batch in self._repository.export(query, _caller_scope()):
            for message in export_messages(batch, self._max_runs_message_bytes):
                yield message

    @translate_errors
    async def DeleteRuns(
        self, request: runs_service_pb2.DeleteRunsRequest, context: grpc.aio.ServicerContext
    ) -> runs_service_pb2.DeleteRunsResponse:
        identity = current_identity.get()
        if not identity.may_delete_runs:
            raise PermissionDenied(
                "DeleteRuns is not allowed with the execution service's token (it only records runs); "
                "use an admin token, or a user token for that user's own runs"
            )
        query = DeleteRunsQuery(
            filter=request.filter,
            dry_run=request.dry_run,
            match_all=request.match_all,
            include_unfinished=request.include_unfinished,
        )
        answer = await self._repository.delete_runs(query, _caller_scope())
        log.info(
            "runs counted for deletion" if request.dry_run else "runs deleted",
            extra={
                "user": identity.user,
                "role": identity.role.value,
                "filter": request.filter,
                "match_all": request.match_all,
                "include_unfinished": request.include_unfinished,
                "run_count": answer.run_count,
                "unfinished_count": answer.unfinished_count,
            },
        )
        return runs_service_pb2.DeleteRunsResponse(
            run_count=answer.run_count, sample_run_ids=answer.sample_run_ids, unfinished_count=answer.unfinished_count
        )

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
            descendants_to_pb(response, descendants, self._max_runs_message_bytes)
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
        return run_page_to_pb(page, self._max_runs_message_bytes)

    @translate_errors
    async def ListRunSteps(
        self, request: runs_service_pb2.ListRunStepsRequest, context: grpc.aio.ServicerContext
    ) -> runs_service_pb2.ListRunStepsResponse:
        run_id = _checked_run_id(request.run_id)
        page = await self._repository.list_steps(run_id, request.page_size, request.page_token, _caller_scope())
        return step_page_to_pb(page, self._max_runs_message_bytes)

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

    @translate_errors
    async def ClaimScheduleTick(
        self, request: runs_service_pb2.ClaimScheduleTickRequest, context: grpc.aio.ServicerContext
    ) -> runs_service_pb2.ClaimScheduleTickResponse:
        check_schedule_caller("ClaimScheduleTick")
        return claim_result_to_pb(await self._schedules.claim_tick(claim_from_pb(request)))

    @translate_errors
    async def ListScheduleStates(
        self, request: runs_service_pb2.ListScheduleStatesRequest, context: grpc.aio.ServicerContext
    ) -> runs_service_pb2.ListScheduleStatesResponse:
        check_schedule_caller("ListScheduleStates")
        states = await self._schedules.states(listed_schedules(request))
        return runs_service_pb2.ListScheduleStatesResponse(states=[state_to_pb(s) for s in states])

    @translate_errors
    async def SetSchedulePaused(
        self, request: runs_service_pb2.SetSchedulePausedRequest, context: grpc.aio.ServicerContext
    ) -> runs_service_pb2.SetSchedulePausedResponse:
        check_schedule_caller("SetSchedulePaused")
        schedule, paused, changed_by = pause_from_pb(request)
        state = await self._schedules.set_paused(schedule, paused, changed_by)
        return runs_service_pb2.SetSchedulePausedResponse(state=state_to_pb(state))
