"""The one place where ExecutionService's domain errors become gRPC statuses."""

from __future__ import annotations

import grpc

from agentrun_core.grpc_status import abort
from execution_service.errors import (
    AgentNotFound,
    AgentUnusable,
    ExecutionDatabaseUnavailable,
    ExecutionError,
    HistoryUnavailable,
    InvalidRequest,
    PermissionDenied,
    RunAlreadyExists,
    RunAlreadyFinished,
    RunIdUncheckable,
    RunNotForkable,
    RunNotFound,
    RunsServiceUnavailable,
    RunStateUnknown,
    ScheduleNotFound,
    ServiceShuttingDown,
    TooManyRuns,
    Unimplemented,
)

_CODES: list[tuple[type[ExecutionError], grpc.StatusCode]] = [
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (Unimplemented, grpc.StatusCode.UNIMPLEMENTED),
    (AgentNotFound, grpc.StatusCode.NOT_FOUND),
    (AgentUnusable, grpc.StatusCode.FAILED_PRECONDITION),
    (RunNotFound, grpc.StatusCode.NOT_FOUND),
    (RunAlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (RunAlreadyFinished, grpc.StatusCode.FAILED_PRECONDITION),
    (TooManyRuns, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ServiceShuttingDown, grpc.StatusCode.UNAVAILABLE),
    (ScheduleNotFound, grpc.StatusCode.NOT_FOUND),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (RunsServiceUnavailable, grpc.StatusCode.UNAVAILABLE),
    (HistoryUnavailable, grpc.StatusCode.UNAVAILABLE),
    (ExecutionDatabaseUnavailable, grpc.StatusCode.UNAVAILABLE),
    (RunNotForkable, grpc.StatusCode.FAILED_PRECONDITION),
    (RunIdUncheckable, grpc.StatusCode.UNAVAILABLE),
    (RunStateUnknown, grpc.StatusCode.UNAVAILABLE),
]


def status_code_for(error: ExecutionError) -> grpc.StatusCode:
    for error_type, code in _CODES:
        if isinstance(error, error_type):
            return code
    return grpc.StatusCode.INTERNAL


async def abort_for(context: grpc.aio.ServicerContext, error: ExecutionError) -> None:
    retry_after = error.retry_after_s if isinstance(error, TooManyRuns) else None
    await abort(
        context,
        status_code_for(error),
        error.message,
        reason=error.reason,
        field=getattr(error, "field", None),
        retry_after_s=retry_after,
    )
