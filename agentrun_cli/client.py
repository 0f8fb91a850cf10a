"""gRPC plumbing: channels (plain or TLS), bearer-token metadata, typed calls that raise ServiceError."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import grpc
from agentrun.execution.v1 import execution_service_pb2 as ex_pb2
from agentrun.execution.v1 import execution_service_pb2_grpc as ex_grpc
from agentrun.runs.v1 import runs_service_pb2 as runs_pb2
from agentrun.runs.v1 import runs_service_pb2_grpc as runs_grpc

from agentrun_cli.errors import CliError, Endpoint, ServiceError
from agentrun_cli.settings import (
    EXECUTION_TARGET_ENV,
    RUNS_TARGET_ENV,
    TLS_CA_ENV,
    CliSettings,
)

UNARY_TIMEOUT_S = 30.0
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

Metadata = tuple[tuple[str, str], ...]
E = TypeVar("E")
E_co = TypeVar("E_co", covariant=True)


def call_metadata(settings: CliSettings) -> Metadata:
    return (("authorization", f"Bearer {settings.token}"),) if settings.token else ()


def open_channel(target: str, tls_ca: str | None) -> grpc.Channel:
    options = [("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES)]
    if not tls_ca:
        return grpc.insecure_channel(target, options=options)
    try:
        root = Path(tls_ca).expanduser().read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read the CA file {tls_ca!r} ({TLS_CA_ENV} / --tls-ca): {exc.strerror}") from None
    return grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=root), options=options)


class _StreamCall(Protocol[E_co]):
    """What grpc returns for a server-streaming call: an iterator of responses that can be cancelled."""

    def __next__(self) -> E_co: ...

    def cancel(self) -> bool: ...


class EventStream(Generic[E]):
    """A server stream whose errors become ServiceError. Unlike a generator it survives a KeyboardInterrupt
    raised while waiting, so a caller can keep reading after asking the server to cancel."""

    def __init__(self, call: _StreamCall[E], endpoint: Endpoint) -> None:
        self._call = call
        self._endpoint = endpoint

    def __iter__(self) -> Iterator[E]:
        return self

    def __next__(self) -> E:
        try:
            return next(self._call)
        except grpc.RpcError as exc:
            raise ServiceError(self._endpoint, exc) from None

    def cancel(self) -> None:
        """Closes the stream; the server sees a disconnect."""
        self._call.cancel()


class RunsClient:
    def __init__(self, settings: CliSettings) -> None:
        self.endpoint = Endpoint("RunsService", settings.runs_target, RUNS_TARGET_ENV, "--runs-target")
        self._channel = open_channel(settings.runs_target, settings.tls_ca)
        self._stub = runs_grpc.RunsServiceStub(self._channel)
        self._metadata = call_metadata(settings)

    def close(self) -> None:
        self._channel.close()

    def get_run(self, run_id: str, *, full: bool = True) -> runs_pb2.GetRunResponse:
        view = runs_pb2.RUN_VIEW_FULL if full else runs_pb2.RUN_VIEW_BASIC
        try:
            return self._stub.GetRun(
                runs_pb2.GetRunRequest(run_id=run_id, view=view), timeout=UNARY_TIMEOUT_S, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise ServiceError(self.endpoint, exc) from None

    def list_runs(self, request: runs_pb2.ListRunsRequest) -> runs_pb2.ListRunsResponse:
        try:
            return self._stub.ListRuns(request, timeout=UNARY_TIMEOUT_S, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise ServiceError(self.endpoint, exc) from None

    def get_run_stats(self, request: runs_pb2.GetRunStatsRequest) -> runs_pb2.GetRunStatsResponse:
        try:
            return self._stub.GetRunStats(request, timeout=UNARY_TIMEOUT_S, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise ServiceError(self.endpoint, exc) from None

    def get_tool_stats(self, request: runs_pb2.GetToolStatsRequest) -> runs_pb2.GetToolStatsResponse:
        try:
            return self._stub.GetToolStats(request, timeout=UNARY_TIMEOUT_S, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise ServiceError(self.endpoint, exc) from None


class ExecutionClient:
    def __init__(self, settings: CliSettings) -> None:
        self.endpoint = Endpoint(
            "ExecutionService", settings.execution_target, EXECUTION_TARGET_ENV, "--execution-target"
        )
        self._channel = open_channel(settings.execution_target, settings.tls_ca)
        self._stub = ex_grpc.ExecutionServiceStub(self._channel)
        self._metadata = call_metadata(settings)

    def close(self) -> None:
        self._channel.close()

    def execute(self, request: ex_pb2.ExecuteAgentRequest) -> EventStream[ex_pb2.ExecuteAgentResponse]:
        return EventStream(self._stub.ExecuteAgent(request, metadata=self._metadata), self.endpoint)

    def watch(self, run_id: str, from_sequence: int = 0) -> EventStream[ex_pb2.WatchRunResponse]:
        request = ex_pb2.WatchRunRequest(run_id=run_id, from_sequence=from_sequence)
        return EventStream(self._stub.WatchRun(request, metadata=self._metadata), self.endpoint)

    def cancel_run(
        self, run_id: str, *, after_turn: bool = False, timeout: float = UNARY_TIMEOUT_S
    ) -> ex_pb2.CancelRunResponse:
        mode = ex_pb2.CANCEL_MODE_AFTER_TURN if after_turn else ex_pb2.CANCEL_MODE_IMMEDIATE
        try:
            return self._stub.CancelRun(
                ex_pb2.CancelRunRequest(run_id=run_id, mode=mode), timeout=timeout, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise ServiceError(self.endpoint, exc) from None

    def list_agents(self) -> ex_pb2.ListAgentsResponse:
        try:
            return self._stub.ListAgents(ex_pb2.ListAgentsRequest(), timeout=UNARY_TIMEOUT_S, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise ServiceError(self.endpoint, exc) from None
