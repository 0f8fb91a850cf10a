"""Publishing a durable run to RunsService, called as a checkpointed step of the run's workflow (so RunsService being
down loses nothing: the workflow waits and retries, and a replica that resumes the run retries in its place). The
local SQLite outbox is not used in this mode.

Records that are published at the same time go out together: a record that comes while `SENDERS` RecordRuns calls
are in flight joins the next one (up to `batch_max_records` records and `batch_max_bytes` bytes), so a burst of runs
ending at once costs RunsService one transaction per batch rather than one per run, as the embedded outbox's batches
do. Each record keeps its own fate: stored (True), refused for good (RecordRuns REJECTED it, or RecordRun said
INVALID_ARGUMENT: False, logged), or retried with the shared backoff (agentrun_core.backoff) when the call failed. A
RunsService without RecordRuns (UNIMPLEMENTED: an older version) gets one RecordRun per record until a later probe
finds it; a batch refused as a whole for a permanent reason goes again record by record."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc
from agentrun.runs.v1 import runs_service_pb2, runs_service_pb2_grpc

from agentrun_core.backoff import Backoff
from agentrun_core.contract import RECORD_RUNS_MAX_RUNS
from agentrun_core.domain import Run
from agentrun_core.tasks import cancel_and_wait
from execution_service.publish.publisher import DEFAULT_BATCH_MAX_BYTES, DEFAULT_BATCH_MAX_RECORDS
from execution_service.publish.records import decode_request, encode_run
from execution_service.publish.retry import DELIVERY_BACKOFF, Disposition, classify, server_retry_delay_s

log = logging.getLogger(__name__)

CallMetadata = Callable[[], Sequence[tuple[str, str]]]

# RecordRuns calls in flight at once; records that come meanwhile wait for the next batch.
SENDERS = 2
# After RunsService answered RecordRuns with UNIMPLEMENTED, records go one per RecordRun this long.
REPROBE_S = 300.0


class _Refused(Exception):
    """RunsService refused the record for good (REJECTED in RecordRuns): sending it again changes nothing."""


class _NotAnswered(Exception):
    """The record's batch got no usable answer (a malformed response, an unexpected error): try again."""


@dataclass
class _Pending:
    request: runs_service_pb2.RecordRunRequest
    size: int
    stored: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def settle(self, error: BaseException | None = None) -> None:
        if self.stored.done():  # its deliverer stopped waiting (cancelled)
            return
        if error is None:
            self.stored.set_result(None)
        else:
            self.stored.set_exception(error)


class RunPublisher:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        call_metadata: CallMetadata,
        *,
        backoff: Backoff = DELIVERY_BACKOFF,
        call_timeout_s: float = 10.0,
        batch_max_records: int = DEFAULT_BATCH_MAX_RECORDS,
        batch_max_bytes: int = DEFAULT_BATCH_MAX_BYTES,
    ) -> None:
        if not 1 <= batch_max_records <= RECORD_RUNS_MAX_RUNS:
            raise ValueError(f"batch_max_records must be from 1 to {RECORD_RUNS_MAX_RUNS} (RecordRuns' cap)")
        self._stub = runs_service_pb2_grpc.RunsServiceStub(channel)
        self._call_metadata = call_metadata
        self._backoff = backoff
        self._call_timeout_s = call_timeout_s
        self._batch_max_records = batch_max_records
        self._batch_max_bytes = batch_max_bytes
        self._waiting: list[_Pending] = []
        self._senders: set[asyncio.Task[None]] = set()
        self._sending = 0  # senders that may still take records (a done task leaves _senders a step later)
        self._batches_refused_at: float | None = None

    async def deliver(self, run: Run, give_up_after_s: float | None = None) -> bool:
        """Sends the run until RunsService stores it (True). False when RunsService refuses it for good (logged at
        ERROR: nothing will change that) or, with `give_up_after_s`, when that much time passed first."""
        request = decode_request(encode_run(run))
        deadline = None if give_up_after_s is None else time.monotonic() + give_up_after_s
        failures = 0
        while True:
            try:
                if deadline is None:
                    await self._record(request)
                else:  # a record queued behind slow batches must not outwait its caller's bound
                    await asyncio.wait_for(self._record(request), max(deadline - time.monotonic(), 0.001))
                return True
            except TimeoutError:
                return False  # the record may still go out with its batch: RecordRun(s) is an idempotent upsert
            except _Refused as exc:
                log.error(
                    "RunsService refuses this run for good; it is not stored", extra={"run_id": run.id, "why": str(exc)}
                )
                return False
            except grpc.aio.AioRpcError as exc:
                if classify(exc.code()) is Disposition.PARK:
                    log.error(
                        "RunsService refuses this run for good; it is not stored",
                        extra={"run_id": run.id, "code": exc.code().name, "details": exc.details()},
                    )
                    return False
                failures += 1
                delay = self._backoff.delay_s(failures, server_retry_delay_s(exc))
                code = exc.code().name
            except _NotAnswered as exc:
                failures += 1
                delay = self._backoff.delay_s(failures, None)
                code = str(exc)
            if failures == 1 or failures % 10 == 0:
                log.warning(
                    "RunsService call failed; retrying with backoff",
                    extra={"run_id": run.id, "code": code, "attempt": failures},
                )
            if deadline is not None and time.monotonic() + delay > deadline:
                return False
            await asyncio.sleep(delay)

    async def _record(self, request: runs_service_pb2.RecordRunRequest) -> None:
        """One attempt: returns once stored; raises AioRpcError (the call failed), _Refused or _NotAnswered."""
        if not self._batches_allowed():
            await self._record_one(request)
            return
        pending = _Pending(request, request.ByteSize())
        self._waiting.append(pending)
        if self._sending < SENDERS:
            self._sending += 1  # counted down by the sender itself as it leaves: never a record without a sender
            # In a context of its own: a batch belongs to no one run's trace (nor to its DBOS workflow).
            sender = asyncio.create_task(
                self._send_batches(), name="durable-publish-batches", context=contextvars.Context()
            )
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        await pending.stored

    def _batches_allowed(self) -> bool:
        refused_at = self._batches_refused_at
        return refused_at is None or time.monotonic() - refused_at >= REPROBE_S

    def _next_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        size = 0
        while self._waiting and len(batch) < self._batch_max_records:
            pending = self._waiting[0]
            if batch and size + pending.size > self._batch_max_bytes:
                break  # a record larger than the cap goes alone
            batch.append(self._waiting.pop(0))
            size += pending.size
        return batch

    async def _send_batches(self) -> None:
        try:
            while self._waiting:
                batch = self._next_batch()
                try:
                    await self._send(batch)
                except asyncio.CancelledError:
                    for pending in (*batch, *self._waiting):
                        pending.settle(_NotAnswered("the publisher stopped"))
                    self._waiting = []
                    raise
                except Exception as exc:
                    log.exception("RecordRuns attempt failed unexpectedly", extra={"records": len(batch)})
                    for pending in batch:
                        pending.settle(_NotAnswered(f"unexpected error: {exc!r}"))
        finally:
            self._sending -= 1  # in the same step as the last look at _waiting: a record added after it starts one

    async def close(self) -> None:
        """Stops the senders; records still waiting fail their attempt (their workflows retry them when resumed)."""
        await cancel_and_wait(*self._senders)
        for pending in self._waiting:  # left to a sender stopped before it began
            pending.settle(_NotAnswered("the publisher stopped"))
        self._waiting = []

    async def _send(self, batch: list[_Pending]) -> None:
        if len(batch) == 1 or not self._batches_allowed():
            await asyncio.gather(*(self._settle_one(pending) for pending in batch))
            return
        request = runs_service_pb2.RecordRunsRequest(requests=[pending.request for pending in batch])
        try:
            response: runs_service_pb2.RecordRunsResponse = await self._stub.RecordRuns(
                request, timeout=self._call_timeout_s, metadata=tuple(self._call_metadata())
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNIMPLEMENTED:
                if self._batches_refused_at is None:
                    log.warning(
                        "RunsService has no RecordRuns (an older version): publishing one record per RecordRun call",
                        extra={"retry_batches_after_s": REPROBE_S},
                    )
                self._batches_refused_at = time.monotonic()
            elif not (classify(code) is Disposition.PARK or code == grpc.StatusCode.RESOURCE_EXHAUSTED):
                for pending in batch:  # RunsService down or slow: each record backs off and comes again
                    pending.settle(exc)
                return
            else:
                log.warning(
                    "RunsService refused a batch as a whole; publishing its records one by one",
                    extra={"code": code.name, "details": exc.details(), "records": len(batch)},
                )
            await asyncio.gather(*(self._settle_one(pending) for pending in batch))
            return
        if len(response.results) != len(batch):
            log.error(
                "RecordRuns answered with a wrong number of results; the records are sent again",
                extra={"sent": len(batch), "results": len(response.results)},
            )
            for pending in batch:
                pending.settle(_NotAnswered(f"RecordRuns answered {len(response.results)} results for {len(batch)}"))
            return
        for pending, result in zip(batch, response.results, strict=True):
            if result.outcome == runs_service_pb2.RECORD_OUTCOME_REJECTED:
                rejection = result.rejection
                pending.settle(_Refused(f"{rejection.reason or 'REJECTED'}: {rejection.message}"))
            else:
                pending.settle()

    async def _settle_one(self, pending: _Pending) -> None:
        try:
            await self._record_one(pending.request)
        except (grpc.aio.AioRpcError, _NotAnswered) as exc:
            pending.settle(exc)
        else:
            pending.settle()

    async def _record_one(self, request: runs_service_pb2.RecordRunRequest) -> None:
        await self._stub.RecordRun(request, timeout=self._call_timeout_s, metadata=tuple(self._call_metadata()))
