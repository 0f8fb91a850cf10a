"""A tiny RunsService stand-in for the publisher tests: RecordRun and RecordRuns (switchable off, as an older
RunsService), state kept in memory across restarts."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field

import grpc
from agentrun.runs.v1 import run_pb2, runs_service_pb2, runs_service_pb2_grpc

FAST_RECONNECT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 300),
]


@dataclass
class FakeRunsServicer(runs_service_pb2_grpc.RunsServiceServicer):
    # Knobs
    unavailable_next: int = 0  # answer UNAVAILABLE to this many calls first
    reject: dict[str, grpc.StatusCode] = field(default_factory=dict)  # run id -> error code, every time
    delay_s: dict[str, float] = field(default_factory=dict)  # run id -> seconds to wait before answering
    delay_once: set[str] = field(default_factory=set)  # run ids whose delay applies only to the first call
    required_token: str | None = None  # when set, calls without `authorization: Bearer <token>` are UNAUTHENTICATED
    batch_rpc: bool = True  # False: RecordRuns is UNIMPLEMENTED (a RunsService from before it)
    batch_error: grpc.StatusCode | None = None  # when set, every RecordRuns call fails with it
    # Observations
    attempts: int = 0  # RecordRun calls, and records in RecordRuns calls
    batch_sizes: list[int] = field(default_factory=list)  # records per RecordRuns call (answered or not)
    single_calls: int = 0  # RecordRun calls
    accepted: list[run_pb2.Run] = field(default_factory=list)  # every successful RecordRun, in arrival order
    stored: dict[str, run_pb2.Run] = field(default_factory=dict)  # upsert by id, terminal wins
    metadata: list[dict[str, str]] = field(default_factory=list)
    max_concurrent_per_run: int = 0
    _active: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def statuses(self, run_id: str) -> list[str]:
        return [run_pb2.RunStatus.Name(r.status) for r in self.accepted if r.id == run_id]

    async def _check_call(self, context: grpc.aio.ServicerContext) -> None:
        md = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        self.metadata.append(md)
        if self.unavailable_next > 0:
            self.unavailable_next -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "fake: unavailable")
        if self.required_token is not None and md.get("authorization") != f"Bearer {self.required_token}":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "fake: bad token")

    async def _hold(self, run_ids: list[str]) -> None:
        for run_id in run_ids:
            self._active[run_id] += 1
            self.max_concurrent_per_run = max(self.max_concurrent_per_run, self._active[run_id])
        try:
            delay = max((self.delay_s.get(run_id, 0.0) for run_id in run_ids), default=0.0)
            for run_id in run_ids:
                if run_id in self.delay_once:
                    self.delay_s.pop(run_id, None)
            if delay:
                await asyncio.sleep(delay)
        finally:
            for run_id in run_ids:
                self._active[run_id] -= 1

    def _store(self, run: run_pb2.Run) -> runs_service_pb2.RecordRunResponse:
        self.accepted.append(run)
        old = self.stored.get(run.id)
        if old is None:
            outcome = runs_service_pb2.RECORD_OUTCOME_CREATED
        elif old == run:
            outcome = runs_service_pb2.RECORD_OUTCOME_UNCHANGED
        elif old.status != run_pb2.RUN_STATUS_RUNNING:
            outcome = runs_service_pb2.RECORD_OUTCOME_IGNORED
        else:
            outcome = runs_service_pb2.RECORD_OUTCOME_UPDATED
        if outcome in (runs_service_pb2.RECORD_OUTCOME_CREATED, runs_service_pb2.RECORD_OUTCOME_UPDATED):
            self.stored[run.id] = run
        return runs_service_pb2.RecordRunResponse(outcome=outcome, stored_status=self.stored[run.id].status)

    async def RecordRun(
        self, request: runs_service_pb2.RecordRunRequest, context: grpc.aio.ServicerContext
    ) -> runs_service_pb2.RecordRunResponse:
        self.attempts += 1
        self.single_calls += 1
        await self._check_call(context)
        run = request.run
        if run.id in self.reject:
            await context.abort(self.reject[run.id], f"fake: rejected {run.id}")
        await self._hold([run.id])
        return self._store(run)

    async def RecordRuns(
        self, request: runs_service_pb2.RecordRunsRequest, context: grpc.aio.ServicerContext
    ) -> runs_service_pb2.RecordRunsResponse:
        if not self.batch_rpc:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        runs = [item.run for item in request.requests]
        self.attempts += len(runs)
        self.batch_sizes.append(len(runs))
        await self._check_call(context)
        if self.batch_error is not None:
            await context.abort(self.batch_error, "fake: batch refused")
        # A rejection other than INVALID_ARGUMENT is not about the run: the whole call fails with it.
        for run in runs:
            code = self.reject.get(run.id)
            if code is not None and code != grpc.StatusCode.INVALID_ARGUMENT:
                await context.abort(code, f"fake: rejected {run.id}")
        await self._hold([run.id for run in runs])
        response = runs_service_pb2.RecordRunsResponse()
        for run in runs:
            if run.id in self.reject:
                response.results.add(
                    run_id=run.id,
                    outcome=runs_service_pb2.RECORD_OUTCOME_REJECTED,
                    rejection=runs_service_pb2.RecordRunRejection(
                        reason="INVALID_ARGUMENT", field="run", message=f"run: fake: rejected {run.id}"
                    ),
                )
                continue
            one = self._store(run)
            response.results.add(run_id=run.id, outcome=one.outcome, stored_status=one.stored_status)
        return response


class FakeRunsServer:
    """Starts on 127.0.0.1 (port 0 the first time), can be stopped and started again on the same port."""

    def __init__(self, servicer: FakeRunsServicer | None = None) -> None:
        self.servicer = servicer or FakeRunsServicer()
        self.port = 0
        self._server: grpc.aio.Server | None = None

    @property
    def target(self) -> str:
        assert self.port, "start the server once to pick its port"
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        server = grpc.aio.server()
        runs_service_pb2_grpc.add_RunsServiceServicer_to_server(self.servicer, server)
        port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        if port == 0:
            raise RuntimeError(f"could not bind 127.0.0.1:{self.port}")
        self.port = port
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None

    async def __aenter__(self) -> FakeRunsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
