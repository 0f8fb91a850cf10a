"""Has a run id been used before? Asked before an ExecuteAgent that names its run id starts a run, so an idempotent
retry reaching an instance that no longer holds the run in memory does not execute it a second time."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import grpc
from agentrun.runs.v1 import run_pb2, runs_service_pb2, runs_service_pb2_grpc
from google.protobuf.message import DecodeError

from agentrun_core.domain import RunStatus
from agentrun_core.echo import cut
from agentrun_core.proto_convert import ConversionError, run_status_from_pb
from execution_service.errors import RunIdUncheckable, RunStateUnknown
from execution_service.publish.outbox import Outbox
from execution_service.publish.records import decode_request

log = logging.getLogger(__name__)


class KnownRuns:
    def __init__(
        self,
        outbox: Outbox | None,
        channel: grpc.aio.Channel,
        call_metadata: Callable[[], Sequence[tuple[str, str]]],
        *,
        timeout_s: float = 2.0,
    ) -> None:
        self._outbox = outbox
        self._stub = runs_service_pb2_grpc.RunsServiceStub(channel)
        self._call_metadata = call_metadata
        self._timeout_s = timeout_s

    async def exists(self, run_id: str) -> bool:
        """True when this instance's outbox (none in durable mode) or RunsService holds the run. Raises
        RunIdUncheckable when RunsService cannot answer: starting the run then could execute it a second time (only
        runs whose client chose their id are checked; the others never wait for RunsService)."""
        if self._outbox is not None and await self._outbox.get(run_id) is not None:
            return True
        try:
            reply = await self._get_run(run_id)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return False
            log.warning(
                "cannot tell whether the run id was used before; the run is refused",
                extra={"run_id": run_id, "code": exc.code().name, "error": exc.details()},
            )
            raise RunIdUncheckable(run_id, f"{exc.code().name}: {cut(exc.details() or '', 200)}") from None
        return reply is not None

    async def finished(self, run_id: str) -> tuple[str, RunStatus] | None:
        """(user, status) of a run that has ended, from this instance's outbox or RunsService; None when the run is
        unknown or still running (e.g. on another instance). Raises RunStateUnknown when RunsService cannot answer."""
        item = None if self._outbox is None else await self._outbox.get(run_id)
        if item is not None:
            try:
                return _finished(decode_request(item.payload).run) if item.terminal else None
            except DecodeError:
                return None
        try:
            reply = await self._get_run(run_id)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            log.warning(
                "cannot tell whether the run has finished",
                extra={"run_id": run_id, "code": exc.code().name, "error": exc.details()},
            )
            raise RunStateUnknown(run_id, f"{exc.code().name}: {cut(exc.details() or '', 200)}") from None
        return _finished(reply.run)

    async def _get_run(self, run_id: str) -> runs_service_pb2.GetRunResponse:
        return await self._stub.GetRun(
            runs_service_pb2.GetRunRequest(run_id=run_id),
            metadata=tuple(self._call_metadata()),
            timeout=self._timeout_s,
        )


def _finished(run: run_pb2.Run) -> tuple[str, RunStatus] | None:
    try:
        status = run_status_from_pb(run.status)
    except ConversionError:
        return None
    return (run.user, status) if status.is_terminal else None
