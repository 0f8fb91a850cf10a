"""The console's gRPC access to both services: one channel each, shared by every request; every call is made as the
person the request belongs to (their bearer token as call metadata) and fails with ServiceCallError.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import grpc
from agentrun.execution.v1 import execution_service_pb2 as ex_pb2
from agentrun.execution.v1 import execution_service_pb2_grpc as ex_grpc
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as runs_pb2
from agentrun.runs.v1 import runs_service_pb2_grpc as runs_grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from agentrun_core.auth.interceptor import USER_METADATA_KEY
from agentrun_core.replica_channels import EXECUTION_SERVICE, healthy_replicas_options
from agentrun_core.tls import aio_channel
from agentrun_web.settings import WebSettings

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# ListRunSteps caps its pages at 1,000 steps.
MAX_STEP_PAGE = 1000
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a call is made for: their bearer token, or None when the services run without authentication."""

    token: str | None = field(default=None, repr=False)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One service, with the variable that chose its address (for messages a person can act on)."""

    service: str
    target: str
    env_var: str


class ServiceCallError(Exception):
    """A call to a service failed: the canonical code, the service's own message, and its ErrorInfo reason and
    BadRequest field when it sent them."""

    def __init__(
        self,
        endpoint: Endpoint,
        method: str,
        code: grpc.StatusCode,
        details: str,
        *,
        reason: str | None = None,
        field: str | None = None,
        unreachable: bool = False,
    ) -> None:
        super().__init__(f"{endpoint.service}.{method}: {code.name}: {details}")
        self.endpoint = endpoint
        self.method = method
        self.code = code
        self.details = details
        self.reason = reason
        self.field = field
        self.unreachable = unreachable

    @classmethod
    def from_rpc(cls, endpoint: Endpoint, method: str, error: grpc.RpcError) -> ServiceCallError:
        code = error.code() if isinstance(error, grpc.aio.AioRpcError | grpc.Call) else None
        code = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
        details = " ".join(((error.details() if isinstance(error, grpc.aio.AioRpcError) else "") or "").split())
        reason, bad_field, has_status = None, None, False
        if isinstance(error, grpc.aio.AioRpcError):
            trailing = error.trailing_metadata() or ()
            has_status = any(key == _STATUS_DETAILS_KEY for key, _ in trailing)
            reason, bad_field = _rich_details(error) if has_status else (None, None)
        unreachable = code is grpc.StatusCode.UNAVAILABLE and not has_status
        return cls(endpoint, method, code, details, reason=reason, field=bad_field, unreachable=unreachable)

    def log_context(self) -> dict[str, Any]:
        return {
            "service": self.endpoint.service,
            "target": self.endpoint.target,
            "rpc": self.method,
            "code": self.code.name,
            "details": self.details,
            "reason": self.reason,
        }


def _rich_details(error: grpc.aio.AioRpcError) -> tuple[str | None, str | None]:
    """The ErrorInfo reason and the first BadRequest field of a received error."""
    try:
        status = rpc_status.from_call(error)
    except ValueError:  # a status that contradicts the call's code or message: ignore the details
        return None, None
    reason, bad_field = None, None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            if bad.field_violations:
                bad_field = bad.field_violations[0].field
    return reason, bad_field


class RunsApi:
    def __init__(self, channel: grpc.aio.Channel, endpoint: Endpoint, timeout_s: float) -> None:
        self._stub = runs_grpc.RunsServiceStub(channel)
        self.endpoint = endpoint
        self._timeout_s = timeout_s

    async def _call(self, method: str, request: Any, caller: Caller) -> Any:
        try:
            return await getattr(self._stub, method)(request, timeout=self._timeout_s, metadata=caller.metadata())
        except grpc.RpcError as exc:
            raise ServiceCallError.from_rpc(self.endpoint, method, exc) from None

    async def get_run_tree(
        self, caller: Caller, run_id: str, *, full: bool = True, descendants: bool = True
    ) -> runs_pb2.GetRunResponse:
        """The run, and (with `descendants`) its sub-agent runs in the BASIC view, at most 500 of them."""
        view = runs_pb2.RUN_VIEW_FULL if full else runs_pb2.RUN_VIEW_BASIC
        request = runs_pb2.GetRunRequest(run_id=run_id, view=view, include_descendants=descendants)
        return await self._call("GetRun", request, caller)

    async def list_runs(self, caller: Caller, request: runs_pb2.ListRunsRequest) -> runs_pb2.ListRunsResponse:
        return await self._call("ListRuns", request, caller)

    async def steps(self, caller: Caller, run_id: str, *, until: int | None = None) -> list[run_pb2.ExecutionStep]:
        """The run's steps in sequence order, ListRunSteps page by page (never one message with the whole run):
        every step, or (`until`) the steps up to that sequence only (a page of `until` steps holds steps 1..until,
        so the pane's step costs what comes before it, not the whole run)."""
        size = min(until, MAX_STEP_PAGE) if until is not None else MAX_STEP_PAGE
        steps: list[run_pb2.ExecutionStep] = []
        token = ""
        while True:
            request = runs_pb2.ListRunStepsRequest(run_id=run_id, page_size=size, page_token=token)
            reply = await self._call("ListRunSteps", request, caller)
            steps.extend(reply.steps)
            token = reply.next_page_token
            if not token or (until is not None and steps and steps[-1].sequence >= until):
                return steps

    async def user_of(self, caller: Caller) -> str:
        """Who RunsService takes the caller for (the `agentrun-user` metadata of its answer to a one-run ListRuns);
        "" when it does not say (authentication off). ServiceCallError when it refuses the token."""
        request = runs_pb2.ListRunsRequest(page_size=1)
        try:
            call = self._stub.ListRuns(request, timeout=self._timeout_s, metadata=caller.metadata())
            await call
            metadata = await call.initial_metadata()
        except grpc.RpcError as exc:
            raise ServiceCallError.from_rpc(self.endpoint, "ListRuns", exc) from None
        for key, value in metadata or ():
            if key == USER_METADATA_KEY and isinstance(value, str):
                return unquote(value)
        return ""

    async def run_stats(self, caller: Caller, request: runs_pb2.GetRunStatsRequest) -> runs_pb2.GetRunStatsResponse:
        return await self._call("GetRunStats", request, caller)

    async def tool_stats(self, caller: Caller, request: runs_pb2.GetToolStatsRequest) -> runs_pb2.GetToolStatsResponse:
        return await self._call("GetToolStats", request, caller)


class ExecutionApi:
    def __init__(self, channel: grpc.aio.Channel, endpoint: Endpoint, timeout_s: float) -> None:
        self._stub = ex_grpc.ExecutionServiceStub(channel)
        self.endpoint = endpoint
        self._timeout_s = timeout_s

    async def list_agents(self, caller: Caller, *, timeout_s: float | None = None) -> ex_pb2.ListAgentsResponse:
        try:
            return await self._stub.ListAgents(
                ex_pb2.ListAgentsRequest(), timeout=timeout_s or self._timeout_s, metadata=caller.metadata()
            )
        except grpc.RpcError as exc:
            raise ServiceCallError.from_rpc(self.endpoint, "ListAgents", exc) from None

    async def cancel_run(self, caller: Caller, run_id: str, *, after_turn: bool) -> None:
        mode = ex_pb2.CANCEL_MODE_AFTER_TURN if after_turn else ex_pb2.CANCEL_MODE_IMMEDIATE
        try:
            await self._stub.CancelRun(
                ex_pb2.CancelRunRequest(run_id=run_id, mode=mode), timeout=self._timeout_s, metadata=caller.metadata()
            )
        except grpc.RpcError as exc:
            raise ServiceCallError.from_rpc(self.endpoint, "CancelRun", exc) from None

    async def start_run(
        self, caller: Caller, request: ex_pb2.ExecuteAgentRequest
    ) -> ex_pb2.RunStarted | ex_pb2.RunQueued:
        """ExecuteAgent with detach: waits for RunStarted (or RunQueued: the run waits for a slot), then closes the
        stream (the run goes on)."""
        detached = ex_pb2.ExecuteAgentRequest()
        detached.CopyFrom(request)
        detached.detach = True
        call = self._stub.ExecuteAgent(detached, metadata=caller.metadata())
        try:
            async with asyncio.timeout(self._timeout_s):
                async for event in call:
                    if event.WhichOneof("event") == "run_started":
                        return event.run_started
                    if event.WhichOneof("event") == "run_queued":
                        return event.run_queued
        except grpc.RpcError as exc:
            raise ServiceCallError.from_rpc(self.endpoint, "ExecuteAgent", exc) from None
        except TimeoutError:
            raise ServiceCallError(
                self.endpoint,
                "ExecuteAgent",
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"the run did not start within {self._timeout_s:g} s",
            ) from None
        finally:
            call.cancel()
        raise ServiceCallError(
            self.endpoint, "ExecuteAgent", grpc.StatusCode.UNKNOWN, "the stream ended before the run started"
        )

    async def watch(self, caller: Caller, run_id: str, from_sequence: int) -> AsyncGenerator[ex_pb2.WatchRunResponse]:
        """WatchRun's events (no deadline: a live run lasts as long as it lasts); the stream is closed when the
        iteration stops (the run goes on: WatchRun never cancels it)."""
        call = self._stub.WatchRun(
            ex_pb2.WatchRunRequest(run_id=run_id, from_sequence=from_sequence), metadata=caller.metadata()
        )
        try:
            async for event in call:
                yield event
        except grpc.RpcError as exc:
            raise ServiceCallError.from_rpc(self.endpoint, "WatchRun", exc) from None
        finally:
            call.cancel()


class Services:
    """Both services' channels (opened inside the running event loop, closed at shutdown) and their APIs."""

    def __init__(self, settings: WebSettings) -> None:
        self._settings = settings
        self._channels: list[grpc.aio.Channel] = []
        self._runs: RunsApi | None = None
        self._execution: ExecutionApi | None = None

    def open(self) -> None:
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # A dropped connection to a service is noticed and re-established without waiting for a request.
            ("grpc.keepalive_time_ms", 30_000),
        ]  # aio_channel adds the reconnect backoff cap (agentrun_core.channel_options): pages work again ~2 s after
        # a service comes back, however long it was down
        tls = self._settings.client_tls
        runs_endpoint = Endpoint("RunsService", self._settings.runs_target, "AGENTRUN_RUNS_TARGET")
        exec_endpoint = Endpoint("ExecutionService", self._settings.execution_target, "AGENTRUN_EXECUTION_TARGET")
        runs_channel = aio_channel(runs_endpoint.target, tls, options=options)
        # Any replica serves any run: calls go to the replicas that serve (a draining one gets no new runs).
        exec_options = [*options, *healthy_replicas_options(EXECUTION_SERVICE, exec_endpoint.target)]
        exec_channel = aio_channel(exec_endpoint.target, tls, options=exec_options)
        self._channels = [runs_channel, exec_channel]
        timeout = self._settings.call_timeout_s
        self._runs = RunsApi(runs_channel, runs_endpoint, timeout)
        self._execution = ExecutionApi(exec_channel, exec_endpoint, timeout)
        log.info(
            "web console connects to the services",
            extra={"runs_target": runs_endpoint.target, "execution_target": exec_endpoint.target, "tls": tls.enabled},
        )

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
        self._channels = []

    @property
    def runs(self) -> RunsApi:
        assert self._runs is not None, "Services.open() was not called"
        return self._runs

    @property
    def execution(self) -> ExecutionApi:
        assert self._execution is not None, "Services.open() was not called"
        return self._execution
