"""OutboxPublisher: the RunSink that never loses a run. `record` writes to the outbox; a sender task delivers.

Delivery guarantees
- `record(run)` returns once the record is fsynced in the outbox; from then on it is delivered at least once, across
  RunsService outages and restarts of this process (unsent records stay in the file for the next start).
- RunsService upserts idempotently by run id, so an at-least-once resend (a call that timed out after the server
  stored it, a crash between send and ack) changes nothing there.
- Records go out in batches through RecordRuns (up to `batch_max_records` records or `batch_max_bytes` bytes per
  call, at most `max_in_flight` calls at once), each record getting its own outcome; when RunsService answers
  RecordRuns with UNIMPLEMENTED (an older RunsService), records go one per RecordRun call until a later probe finds
  RecordRuns (every `batch_reprobe_s`). A batch refused as a whole for a permanent reason (too large for the
  server, INVALID_ARGUMENT) is delivered record by record through RecordRun, so only a bad record is parked.
- Per run, records go out in order and never concurrently: a run in flight is not picked again until that call
  finished. The outbox holds only a run's latest record, so when RUNNING and terminal were both pending only the
  terminal one is sent; a terminal record put while RUNNING was in flight is sent after it (the ack of RUNNING is
  version-checked and leaves the terminal record in place).
- Failures follow execution_service.publish.retry: transient codes back off (per record, exponential with jitter,
  without holding up other records); while RunsService is failing, one call at a time probes it, and once a record
  is accepted again every pending record is due at once, so the backlog of an outage drains in full batches;
  permanent rejections are parked (dead-letter, never dropped), and so is a record RecordRuns answers REJECTED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc
from agentrun.runs.v1 import runs_service_pb2, runs_service_pb2_grpc
from google.protobuf.message import DecodeError

from agentrun_core.backoff import Backoff
from agentrun_core.contract import RECORD_RUNS_MAX_RUNS
from agentrun_core.domain import ExecutionStep, Run
from agentrun_core.failure_streak import FailureStreak
from agentrun_core.telemetry import current_traceparent, trace_context
from execution_service.publish.outbox import Outbox, OutboxError, OutboxItem
from execution_service.publish.records import decode_request, encode_run
from execution_service.publish.retry import (
    DELIVERY_BACKOFF,
    Disposition,
    classify,
    delivery_delay_s,
    server_retry_delay_s,
)
from execution_service.publish.step_journal import StepJournal, journal_directory

log = logging.getLogger(__name__)

CallMetadata = Callable[[], Sequence[tuple[str, str]]]

_IDLE_POLL_S = 30.0  # safety net: re-check the outbox at least this often even when nothing woke the sender
_DELIVERED_REMEMBERED = 1_000  # terminal run ids remembered as delivered, for wait_delivered calls that come late
_LOG_EVERY_S = 30.0  # at most one "RunsService unreachable"/"config error" line per status code per this period
DEFAULT_BATCH_MAX_RECORDS = 100
DEFAULT_BATCH_MAX_BYTES = 4 * 1024 * 1024  # well under RunsService's default 16 MiB message cap
_REPROBE_S = 300.0  # after UNIMPLEMENTED, try RecordRuns again this much later (RunsService may have been upgraded)


def _no_metadata() -> Sequence[tuple[str, str]]:
    return ()


@dataclass(slots=True)
class PublisherCounters:
    """Counts since this publisher was created (for metrics)."""

    sent: int = 0  # records RunsService acknowledged (RecordRuns results or RecordRun calls that succeeded)
    retried: int = 0  # failed attempts scheduled for another try
    parked: int = 0  # records moved to the dead-letter state
    config_errors: int = 0  # UNAUTHENTICATED / PERMISSION_DENIED / UNIMPLEMENTED answers (retried)


@dataclass(frozen=True, slots=True)
class PublisherStats:
    sent: int
    retried: int
    parked: int
    config_errors: int
    pending: int  # records in the outbox waiting for delivery (in flight included)
    parked_total: int  # records in the dead-letter state in the file (from any process lifetime)
    in_flight: int  # records in calls not answered yet
    calls_in_flight: int  # RecordRuns / RecordRun calls not answered yet


@dataclass(slots=True)
class _Throttle:
    last: dict[str, float] = field(default_factory=dict)

    def ready(self, key: str, now: float) -> bool:
        if now - self.last.get(key, -_LOG_EVERY_S) >= _LOG_EVERY_S:
            self.last[key] = now
            return True
        return False


class OutboxPublisher:
    """RunSink backed by an Outbox. The caller owns the outbox and the channel (and closes them after `stop`)."""

    def __init__(
        self,
        outbox: Outbox,
        channel: grpc.aio.Channel,
        *,
        call_timeout_s: float = 10.0,
        max_in_flight: int = 8,
        backoff: Backoff = DELIVERY_BACKOFF,
        call_metadata: CallMetadata = _no_metadata,
        journal: StepJournal | None = None,
        batch_max_records: int = DEFAULT_BATCH_MAX_RECORDS,
        batch_max_bytes: int = DEFAULT_BATCH_MAX_BYTES,
        batch_reprobe_s: float = _REPROBE_S,
    ) -> None:
        """`journal`: the live-steps journal (by default the one beside the outbox file, journal_directory)."""
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if not 1 <= batch_max_records <= RECORD_RUNS_MAX_RUNS:
            raise ValueError(f"batch_max_records must be from 1 to {RECORD_RUNS_MAX_RUNS} (RecordRuns' cap)")
        if batch_max_bytes < 1:
            raise ValueError("batch_max_bytes must be at least 1")
        if call_timeout_s <= 0:
            raise ValueError("call_timeout_s must be positive")
        self._outbox = outbox
        self.journal = journal or StepJournal(journal_directory(outbox.path))
        self._stub = runs_service_pb2_grpc.RunsServiceStub(channel)
        self._call_timeout_s = call_timeout_s
        self._max_in_flight = max_in_flight
        self._batch_max_records = batch_max_records
        self._batch_max_bytes = batch_max_bytes
        self._batch_reprobe_s = batch_reprobe_s
        # When RunsService answered RecordRuns with UNIMPLEMENTED (monotonic time): one record per RecordRun until
        # batch_reprobe_s later.
        self._batches_refused_at: float | None = None
        self._backoff = backoff
        self._call_metadata = call_metadata
        self._counters = PublisherCounters()
        self._in_flight: dict[str, asyncio.Task[None]] = {}  # run id -> the call sending its record
        self._calls: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._read_failures = FailureStreak(
            log, "the outbox sender", "outbox sender could not read the outbox; trying again in 1 s"
        )
        self._progress = asyncio.Event()
        self._throttle = _Throttle()
        self._failing = False  # the last call failed transiently (to log recovery once)
        # Terminal records acknowledged by RunsService: waiters, and the latest ids (a wait may start after the ack).
        self._delivery_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._delivered: OrderedDict[str, None] = OrderedDict()

    # --- RunSink -----------------------------------------------------------------------------------------------

    async def record(self, run: Run) -> None:
        """Durably accepts the run; returns once it is fsynced. Works whether or not the sender is running.

        A RUNNING run is also journaled as live (same transaction), a terminal one leaves the journal (and its
        live-steps file goes). The current trace context (the run's span) is stored with the record, so its RecordRun
        call joins the run's trace.
        """
        if not run.id:
            raise ValueError("run.id must not be empty")
        terminal = run.status.is_terminal
        result = await self._outbox.put(
            run.id, encode_run(run), terminal, mark_live=not terminal, traceparent=current_traceparent()
        )
        log.debug("run recorded in outbox", extra={"run_id": run.id, "status": str(run.status), "put": str(result)})
        if terminal:
            self.journal.forget(run.id)  # the terminal record holds every step now
        self._wake.set()

    def journal_step(self, step: ExecutionStep) -> bytes:
        """See RunSink.journal_step (publish.step_journal)."""
        return self.journal.append(step)

    async def wait_delivered(self, run_id: str, timeout_s: float) -> bool:
        """See RunSink.wait_delivered. Does not wait at all while RunsService is failing or the sender is stopped:
        a run's end must not be held up by an outage its record is already durable against."""
        if run_id in self._delivered:
            return True
        if self._failing or not self.running or timeout_s <= 0:
            return False
        waiter = asyncio.get_running_loop().create_future()
        self._delivery_waiters.setdefault(run_id, []).append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
            return True
        except TimeoutError:
            return False
        finally:
            waiters = self._delivery_waiters.get(run_id, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._delivery_waiters.pop(run_id, None)

    # --- lifecycle ---------------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Starts the sender task on the running event loop. Idempotent."""
        if self.running:
            return
        self._task = asyncio.create_task(self._run(), name="outbox-sender")
        self._wake.set()
        log.info(
            "outbox publisher started",
            extra={"outbox": str(self._outbox.path), "max_in_flight": self._max_in_flight},
        )

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Sends what is due for up to `drain_timeout_s`, then stops. Records not delivered stay in the outbox.

        Records that fail during the drain are deferred as usual (not retried within the drain). Calls still in
        flight at the deadline are cancelled; their records are resent on the next start.
        """
        task = self._task
        if task is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, drain_timeout_s)
        self._wake.set()
        try:
            while not task.done():
                progress = self._progress
                due = await self._outbox.count_due(time.time())
                if due == 0 and not self._in_flight:
                    break
                remaining = deadline - loop.time()
                if remaining <= 0:
                    log.warning(
                        "outbox drain timed out; undelivered records stay in the outbox for the next start",
                        extra={"due": due, "in_flight": len(self._in_flight), "drain_timeout_s": drain_timeout_s},
                    )
                    break
                await self._wait_event(progress, min(remaining, 0.5))
        finally:
            task.cancel()
            calls = list(self._calls)
            for t in calls:
                t.cancel()
            results = await asyncio.gather(task, *calls, return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
                    log.error("outbox sender ended with an error", exc_info=r)
            self._in_flight.clear()
            self._calls.clear()
            self._task = None
        try:
            counts = await self._outbox.counts()
        except OutboxError:
            log.exception("outbox publisher stopped; the outbox could not be read", extra={"sent": self._counters.sent})
            return
        log.info(
            "outbox publisher stopped",
            extra={
                "sent": self._counters.sent,
                "pending": counts.pending,
                "parked": counts.parked,
                "outbox": str(self._outbox.path),
            },
        )

    async def flush(self, timeout_s: float) -> bool:
        """Waits until no record is pending (parked ones don't count). False on timeout. Needs a started sender."""
        if not self.running:
            log.warning("flush() called while the outbox sender is not running")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        self._wake.set()
        while True:
            progress = self._progress
            if (await self._outbox.counts()).pending == 0:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await self._wait_event(progress, min(remaining, 0.5))

    # --- metrics -----------------------------------------------------------------------------------------------

    @property
    def counters(self) -> PublisherCounters:
        c = self._counters
        return PublisherCounters(sent=c.sent, retried=c.retried, parked=c.parked, config_errors=c.config_errors)

    async def stats(self) -> PublisherStats:
        counts = await self._outbox.counts()
        c = self._counters
        return PublisherStats(
            sent=c.sent,
            retried=c.retried,
            parked=c.parked,
            config_errors=c.config_errors,
            pending=counts.pending,
            parked_total=counts.parked,
            in_flight=len(self._in_flight),
            calls_in_flight=len(self._calls),
        )

    # --- sender ------------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # before looking: a put after this point wakes the wait below
            try:
                await self._dispatch_due()
                delay = await self._idle_delay()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._read_failures.failed(error)
                delay = 1.0
            else:
                self._read_failures.succeeded()
            if delay > 0:
                await self._wait_event(self._wake, delay)

    async def _dispatch_due(self) -> None:
        # While RunsService fails, one call at a time probes it (with what is due); the others wait for its answer.
        free = (1 if self._failing else self._max_in_flight) - len(self._calls)
        if free <= 0:
            return
        per_call = self._batch_max_records if self._batches_allowed() else 1
        items = await self._outbox.due(
            time.time(), free * per_call, exclude=tuple(self._in_flight), max_bytes=free * self._batch_max_bytes
        )
        for batch in self._batches(items, per_call, free):
            name = f"outbox-send:{batch[0].run_id}" + (f"+{len(batch) - 1}" if len(batch) > 1 else "")
            call = asyncio.create_task(self._send(batch), name=name)
            self._calls.add(call)
            for item in batch:
                self._in_flight[item.run_id] = call

    def _batches(self, items: list[OutboxItem], per_call: int, calls: int) -> list[list[OutboxItem]]:
        """`items` (oldest schedule first) cut into at most `calls` batches of at most `per_call` records and
        batch_max_bytes bytes (a record larger than that goes alone). Records beyond them wait for the next round."""
        batches: list[list[OutboxItem]] = []
        size = 0
        for item in items:
            current = batches[-1] if batches else None
            if current is None or len(current) >= per_call or size + len(item.payload) > self._batch_max_bytes:
                if len(batches) == calls:
                    break
                batches.append([item])
                size = len(item.payload)
            else:
                current.append(item)
                size += len(item.payload)
        return batches

    def _batches_allowed(self) -> bool:
        refused_at = self._batches_refused_at
        if refused_at is None:
            return True
        if time.monotonic() - refused_at >= self._batch_reprobe_s:
            self._batches_refused_at = None
            log.info("trying RecordRuns again (RunsService may have been upgraded)")
            return True
        return False

    async def _idle_delay(self) -> float:
        if len(self._calls) >= self._max_in_flight:
            return _IDLE_POLL_S  # a finishing call wakes us
        next_at = await self._outbox.next_attempt_at(exclude=tuple(self._in_flight))
        if next_at is None:
            return _IDLE_POLL_S
        return min(_IDLE_POLL_S, max(0.0, next_at - time.time()))

    async def _send(self, batch: list[OutboxItem]) -> None:
        try:
            await self._deliver(batch)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The outbox could not ack/defer/park (disk, closed file). The records are still in the file, unchanged,
            # so they are sent again: at-least-once, and RecordRun(s) is idempotent.
            log.exception(
                "outbox bookkeeping failed after a delivery attempt; the records stay pending",
                extra={"run_ids": [item.run_id for item in batch]},
            )
        finally:
            call = asyncio.current_task()
            self._calls.discard(call)
            for item in batch:
                if self._in_flight.get(item.run_id) is call:
                    del self._in_flight[item.run_id]
            self._wake.set()
            self._notify_progress()

    async def _deliver(self, batch: list[OutboxItem]) -> None:
        sendable: list[tuple[OutboxItem, runs_service_pb2.RecordRunRequest]] = []
        for item in batch:
            try:
                sendable.append((item, decode_request(item.payload)))
            except DecodeError as exc:
                await self._park(item, f"stored payload is not a RecordRunRequest: {exc}")
        if not sendable:
            return
        if not self._batches_allowed():
            await asyncio.gather(*(self._deliver_one(item, request) for item, request in sendable))
            return
        await self._deliver_batch(sendable)

    async def _deliver_batch(self, sendable: list[tuple[OutboxItem, runs_service_pb2.RecordRunRequest]]) -> None:
        items = [item for item, _ in sendable]
        request = runs_service_pb2.RecordRunsRequest(requests=[request for _, request in sendable])
        try:
            metadata = tuple(self._call_metadata())
            # A batch joins the trace of its first run (one call cannot be a child of several traces).
            with trace_context(items[0].traceparent):
                response: runs_service_pb2.RecordRunsResponse = await self._stub.RecordRuns(
                    request, timeout=self._call_timeout_s, metadata=metadata
                )
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNIMPLEMENTED:
                if self._batches_refused_at is None:  # once, not for every batch that was already in flight
                    log.warning(
                        "RunsService has no RecordRuns (an older version): delivering one record per RecordRun call",
                        extra={"retry_batches_after_s": self._batch_reprobe_s},
                    )
                self._batches_refused_at = time.monotonic()
            elif classify(code) is Disposition.PARK or code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                log.warning(
                    "RunsService refused a batch as a whole; delivering its records one by one",
                    extra={"code": code.name if code else "UNKNOWN", "details": exc.details(), "records": len(items)},
                )
            else:
                for item in items:
                    await self._on_rpc_error(item, exc)
                return
            await asyncio.gather(*(self._deliver_one(item, one) for item, one in sendable))
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("RecordRuns attempt failed unexpectedly", extra={"run_ids": [i.run_id for i in items]})
            for item in items:
                await self._defer(item, f"unexpected error: {exc!r}", None)
            return
        if len(response.results) != len(items):
            log.error(
                "RecordRuns answered with a wrong number of results; the records are retried",
                extra={"sent": len(items), "results": len(response.results)},
            )
            for item in items:
                await self._defer(item, f"RecordRuns answered {len(response.results)} results for {len(items)}", None)
            return
        for item, result in zip(items, response.results, strict=True):
            if result.outcome == runs_service_pb2.RECORD_OUTCOME_REJECTED:
                rejection = result.rejection
                await self._park(item, f"{rejection.reason or 'REJECTED'}: {rejection.message}")
                continue
            await self._delivered_one(item, result.outcome)

    async def _deliver_one(self, item: OutboxItem, request: runs_service_pb2.RecordRunRequest) -> None:
        """One record through RecordRun (an older RunsService, or a batch refused as a whole)."""
        try:
            metadata = tuple(self._call_metadata())
            with trace_context(item.traceparent):  # the call's client span is a child of the run's span
                response: runs_service_pb2.RecordRunResponse = await self._stub.RecordRun(
                    request, timeout=self._call_timeout_s, metadata=metadata
                )
        except grpc.aio.AioRpcError as exc:
            await self._on_rpc_error(item, exc)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("RecordRun attempt failed unexpectedly", extra={"run_id": item.run_id})
            await self._defer(item, f"unexpected error: {exc!r}", None)
            return
        await self._delivered_one(item, response.outcome)

    async def _delivered_one(self, item: OutboxItem, outcome_value: int) -> None:
        self._counters.sent += 1
        if self._failing:
            self._failing = False
            # The backlog the outage left is due now, whatever each record's backoff said: it goes out in full
            # batches rather than one record per call as each jittered schedule comes due.
            due_now = await self._outbox.make_due(time.time())
            log.info("RunsService accepts records again", extra={"run_id": item.run_id, "backlog": due_now})
            self._wake.set()
        outcome = runs_service_pb2.RecordOutcome.Name(outcome_value)
        if outcome_value == runs_service_pb2.RECORD_OUTCOME_IGNORED and item.terminal:
            log.warning(
                "RunsService kept a different terminal record for this run",
                extra={"run_id": item.run_id, "outcome": outcome},
            )
        acked = await self._outbox.ack(item.run_id, item.version)
        if item.terminal:
            self._mark_delivered(item.run_id)
        log.debug(
            "run delivered",
            extra={"run_id": item.run_id, "terminal": item.terminal, "outcome": outcome, "acked": acked},
        )

    async def _on_rpc_error(self, item: OutboxItem, exc: grpc.aio.AioRpcError) -> None:
        code = exc.code()
        code_name = code.name if code is not None else "UNKNOWN"
        error = f"{code_name}: {exc.details() or ''}"
        disposition = classify(code)
        if disposition is Disposition.PARK:
            await self._park(item, error)
            return
        now = time.monotonic()
        if disposition is Disposition.RETRY_CONFIG:
            self._counters.config_errors += 1
            if self._throttle.ready(code_name, now):
                log.error(
                    "RunsService refuses our calls (credentials, permissions or deployment); records are kept "
                    "and retried with backoff until this is fixed",
                    extra={"code": code_name, "details": exc.details(), "run_id": item.run_id},
                )
        else:
            self._failing = True
            if self._throttle.ready(code_name, now):
                log.warning(
                    "RunsService call failed; records are kept and retried with backoff",
                    extra={"code": code_name, "details": exc.details(), "run_id": item.run_id},
                )
        await self._defer(item, error, server_retry_delay_s(exc))

    async def _defer(self, item: OutboxItem, error: str, server_hint_s: float | None) -> None:
        delay = delivery_delay_s(self._backoff, item.attempts, server_hint_s)
        deferred = await self._outbox.defer(item.run_id, item.version, time.time() + delay, error)
        if deferred:
            self._counters.retried += 1
        log.debug(
            "RecordRun retry scheduled",
            extra={
                "run_id": item.run_id,
                "attempt": item.attempts + 1,
                "delay_s": round(delay, 3),
                "error": error,
                "superseded": not deferred,
            },
        )

    async def _park(self, item: OutboxItem, error: str) -> None:
        if await self._outbox.park(item.run_id, error, version=item.version):
            self._counters.parked += 1

    # --- waiting -----------------------------------------------------------------------------------------------

    def _mark_delivered(self, run_id: str) -> None:
        self._delivered[run_id] = None
        while len(self._delivered) > _DELIVERED_REMEMBERED:
            self._delivered.popitem(last=False)
        for waiter in self._delivery_waiters.pop(run_id, []):
            if not waiter.done():
                waiter.set_result(None)

    def _notify_progress(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    @staticmethod
    async def _wait_event(event: asyncio.Event, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await event.wait()
