"""gRPC plumbing: channels (plain or TLS), bearer-token metadata, typed calls that raise ServiceError."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import grpc
from agentrun.execution.v1 import execution_service_pb2 as ex_pb2
from agentrun.execution.v1 import execution_service_pb2_grpc as ex_grpc
from agentrun.runs.v1 import runs_service_pb2 as runs_pb2
from agentrun.runs.v1 import runs_service_pb2_grpc as runs_grpc

from agentrun_cli.errors import EXIT_USAGE, CliError, Endpoint, ServiceError
from agentrun_cli.pem import pem_problem
from agentrun_cli.settings import (
    EXECUTION_TARGET_ENV,
    RUNS_TARGET_ENV,
    TLS_CA_ENV,
    TLS_CLIENT_CERT_ENV,
    TLS_CLIENT_KEY_ENV,
    CliSettings,
)
from agentrun_core.bearer_token import clean_token
from agentrun_core.channel_options import RECONNECT_OPTIONS
from agentrun_core.replica_channels import EXECUTION_SERVICE, healthy_replicas_options

UNARY_TIMEOUT_S = 30.0
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

Metadata = tuple[tuple[str, str], ...]
E = TypeVar("E")
E_co = TypeVar("E_co", covariant=True)


def call_metadata(settings: CliSettings) -> Metadata:
    """The bearer token's metadata (its surrounding whitespace dropped: the root command refuses a token with other
    control or non-ASCII characters, naming --token or AGENTRUN_TOKEN)."""
    token = clean_token(settings.token or "")
    return (("authorization", f"Bearer {token}"),) if token else ()


def _read_pem(path: str, what: str, source: str, label: str) -> bytes:
    """The PEM file at `path`; CliError (exit 2) naming the file and its flag / variable when it cannot be read or
    holds no PEM block of `label` (gRPC would only fail later, logging "Failed to create security handshaker")."""
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read the {what} {path!r} ({source}): {exc.strerror}", EXIT_USAGE) from None
    problem = pem_problem(data, label)
    if problem is not None:
        raise CliError(f"the {what} {path!r} ({source}) {problem}", EXIT_USAGE)
    return data


def open_channel(
    target: str,
    tls_ca: str | None,
    *,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    options: list[tuple[str, Any]] | None = None,
) -> grpc.Channel:
    options = [("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES), *RECONNECT_OPTIONS, *(options or [])]
    if not tls_ca:
        if tls_cert or tls_key:
            raise CliError(f"a client certificate needs the services' CA too ({TLS_CA_ENV} / --tls-ca)")
        return grpc.insecure_channel(target, options=options)
    root = _read_pem(tls_ca, "CA file", f"{TLS_CA_ENV} / --tls-ca", "CERTIFICATE")
    if not tls_cert and not tls_key:
        return grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=root), options=options)
    if not tls_cert or not tls_key:
        raise CliError(f"mutual TLS needs both {TLS_CLIENT_CERT_ENV} and {TLS_CLIENT_KEY_ENV} (--tls-cert, --tls-key)")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=root,
        private_key=_read_pem(tls_key, "client key", f"{TLS_CLIENT_KEY_ENV} / --tls-key", "PRIVATE KEY"),
        certificate_chain=_read_pem(
            tls_cert, "client certificate", f"{TLS_CLIENT_CERT_ENV} / --tls-cert", "CERTIFICATE"
        ),
    )
    return grpc.secure_channel(target, credentials, options=options)


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
        self._channel = open_channel(
            settings.runs_target, settings.tls_ca, tls_cert=settings.tls_cert, tls_key=settings.tls_key
        )
        self._stub = runs_grpc.RunsServiceStub(self._channel)
        self._metadata = call_metadata(settings)

    def close(self) -> None:
        self._channel.close()

    def get_run(self, run_id: str, *, full: bool = True, include_descendants: bool = False) -> runs_pb2.GetRunResponse:
        view = runs_pb2.RUN_VIEW_FULL if full else runs_pb2.RUN_VIEW_BASIC
        request = runs_pb2.GetRunRequest(run_id=run_id, view=view, include_descendants=include_descendants)
        try:
            return self._stub.GetRun(request, timeout=UNARY_TIMEOUT_S, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise ServiceError(self.endpoint, exc) from None

    def list_sessions(self, request: runs_pb2.ListSessionsRequest) -> runs_pb2.ListSessionsResponse:
        try:
            return self._stub.ListSessions(request, timeout=UNARY_TIMEOUT_S, metadata=self._metadata)
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

    def export(self, request: runs_pb2.ExportRunsRequest) -> EventStream[runs_pb2.ExportRunsResponse]:
        """A server stream without a deadline: an export of millions of runs takes minutes."""
        return EventStream(self._stub.ExportRuns(request, metadata=self._metadata), self.endpoint)

    def delete_runs(self, request: runs_pb2.DeleteRunsRequest) -> runs_pb2.DeleteRunsResponse:
        """No deadline: a large delete goes batch by batch on the server and may take minutes."""
        try:
            return self._stub.DeleteRuns(request, metadata=self._metadata)
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
        self._channel = open_channel(
            settings.execution_target,
            settings.tls_ca,
            tls_cert=settings.tls_cert,
            tls_key=settings.tls_key,
            options=healthy_replicas_options(EXECUTION_SERVICE, settings.execution_target),
        )
        self._stub = ex_grpc.ExecutionServiceStub(self._channel)
        self._metadata = call_metadata(settings)

    def close(self) -> None:
        self._channel.close()

    def execute(self, request: ex_pb2.ExecuteAgentRequest) -> EventStream[ex_pb2.ExecuteAgentResponse]:
        return EventStream(self._stub.ExecuteAgent(request, metadata=self._metadata), self.endpoint)

    def fork(self, request: ex_pb2.ForkRunRequest) -> EventStream[ex_pb2.ForkRunResponse]:
        return EventStream(self._stub.ForkRun(request, metadata=self._metadata), self.endpoint)

    def watch(
        self, run_id: str, from_sequence: int = 0, from_run_id: str = "", last_received: dict[str, int] | None = None
    ) -> EventStream[ex_pb2.WatchRunResponse]:
        request = ex_pb2.WatchRunRequest(
            run_id=run_id, from_sequence=from_sequence, from_run_id=from_run_id, last_received=last_received or {}
        )
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

    def list_schedules(self, agent_name: str = "", next_count: int = 0) -> ex_pb2.ListSchedulesResponse:
        request = ex_pb2.ListSchedulesRequest(agent_name=agent_name, next_fire_time_count=next_count)
        try:
            return self._stub.ListSchedules(request, timeout=UNARY_TIMEOUT_S, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise ServiceError(self.endpoint, exc) from None

    def set_schedule_paused(self, agent_name: str, schedule_name: str, *, paused: bool) -> list[ex_pb2.Schedule]:
        try:
            options = {"timeout": UNARY_TIMEOUT_S, "metadata": self._metadata}
            if paused:
                request = ex_pb2.PauseScheduleRequest(agent_name=agent_name, schedule_name=schedule_name)
                return list(self._stub.PauseSchedule(request, **options).schedules)
            resume = ex_pb2.ResumeScheduleRequest(agent_name=agent_name, schedule_name=schedule_name)
            return list(self._stub.ResumeSchedule(resume, **options).schedules)
        except grpc.RpcError as exc:
            raise ServiceError(self.endpoint, exc) from None
