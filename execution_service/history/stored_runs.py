"""Reads runs back from RunsService (with this service's own credentials) for sessions and forks."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import grpc
from agentrun.runs.v1 import runs_service_pb2, runs_service_pb2_grpc

from agentrun_core.domain import Run
from agentrun_core.proto_convert import ConversionError, run_from_pb
from execution_service.errors import HistoryUnavailable

log = logging.getLogger(__name__)

# A session's runs are read a page at a time; a session with more runs than this is read up to its newest ones.
_PAGE_SIZE = 100
MAX_SESSION_RUNS = 1000


class StoredRuns:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        call_metadata: Callable[[], Sequence[tuple[str, str]]],
        *,
        timeout_s: float = 10.0,
    ) -> None:
        self._stub = runs_service_pb2_grpc.RunsServiceStub(channel)
        self._call_metadata = call_metadata
        self._timeout_s = timeout_s

    async def get(self, run_id: str) -> Run | None:
        """The run with its steps; None when RunsService does not have it. Raises HistoryUnavailable."""
        try:
            reply = await self._stub.GetRun(
                runs_service_pb2.GetRunRequest(run_id=run_id, view=runs_service_pb2.RUN_VIEW_FULL),
                metadata=tuple(self._call_metadata()),
                timeout=self._timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise _unavailable(f"run {run_id}", exc) from None
        try:
            return run_from_pb(reply.run)
        except ConversionError as exc:
            log.error("RunsService returned a run that does not convert", extra={"run_id": run_id, "error": str(exc)})
            raise HistoryUnavailable(f"run {run_id} as RunsService returned it is unusable: {exc}") from None

    async def session_runs(self, session_id: str, user: str) -> list[Run]:
        """The finished top-level runs of `user`'s session `session_id` (BASIC view: no steps), oldest first: its
        MAX_SESSION_RUNS most recent ones. Raises HistoryUnavailable."""
        runs: list[Run] = []
        page_token = ""
        query = f"session_id = {quoted(session_id)} AND user = {quoted(user)} AND depth = 0"
        while len(runs) < MAX_SESSION_RUNS:
            try:
                reply = await self._stub.ListRuns(
                    runs_service_pb2.ListRunsRequest(
                        filter=query, order_by="start_time desc", page_size=_PAGE_SIZE, page_token=page_token
                    ),
                    metadata=tuple(self._call_metadata()),
                    timeout=self._timeout_s,
                )
            except grpc.aio.AioRpcError as exc:
                raise _unavailable(f"the runs of session {session_id}", exc) from None
            for message in reply.runs:
                try:
                    run = run_from_pb(message)
                except ConversionError as exc:
                    log.error("RunsService listed a run that does not convert", extra={"run_id": message.id})
                    raise HistoryUnavailable(f"run {message.id} as RunsService listed it is unusable: {exc}") from None
                if run.status.is_terminal:  # a run still going has no turns to give yet
                    runs.append(run)
            page_token = reply.next_page_token
            if not page_token:
                break
        return runs[:MAX_SESSION_RUNS][::-1]


def quoted(value: str) -> str:
    """A ListRuns filter string literal: double quotes, with backslashes and double quotes escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _unavailable(what: str, exc: grpc.aio.AioRpcError) -> HistoryUnavailable:
    log.warning(
        "cannot read runs from RunsService", extra={"what": what, "code": exc.code().name, "error": exc.details()}
    )
    return HistoryUnavailable(
        f"cannot read {what} from RunsService ({exc.code().name}: {exc.details()}); retry when it is reachable"
    )
