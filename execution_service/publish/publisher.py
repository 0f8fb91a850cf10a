"""OutboxPublisher: the RunSink that never loses a run. `record` writes to the outbox; a sender task delivers.

Delivery guarantees
- `record(run)` returns once the record is fsynced in the outbox; from then on it is delivered at least once, across
  RunsService outages and restarts of this process (unsent records stay in the file for the next start).
- RunsService upserts idempotently by run id, so an at-least-once resend (a call that timed out after the server
  stored it, a crash between send and ack) changes nothing there.
- Per run, records go out in order and never concurrently: a run in flight is not picked again until that call
  finished. The outbox holds only a run's latest record, so when RUNNING and terminal were both pending only the
  terminal one is sent; a terminal record put while RUNNING was in flight is sent after it (the ack of RUNNING is
  version-checked and leaves the terminal record in place).
- Failures follow execution_service.publish.retry: transient codes back off (per record, exponential with jitter,
  without holding up other records); permanent rejections are parked (dead-letter, never dropped).
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
from agentrun_core.domain import ExecutionStep, Run
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


def _no_metadata() -> Sequence[tuple[str, str]]:
    return ()


@dataclass(slots=True)
class PublisherCounters:
    """Counts since this publisher was created (for metrics)."""

    sent: int = 0  # RecordRun calls that succeeded
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
    in_flight: int


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
    ) -> None:
        """`journal`: the live-steps journal (by default the one beside the outbox file, journal_directory)."""
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if call_timeout_s <= 0:
            raise ValueError("call_timeout_s must be positive")
        self._outbox = outbox
        self.journal = journal or StepJournal(journal_directory(outbox.path))
        self._stub = runs_service_pb2_grpc.RunsServiceStub(channel)
        self._call_timeout_s = call_timeout_s
        self._max_in_flight = max_in_flight
        self._backoff = backoff
        self._call_metadata = call_metadata
        self._counters = PublisherCounters()
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
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
            in_flight = list(self._in_flight.values())
            for t in in_flight:
                t.cancel()
            results = await asyncio.gather(task, *in_flight, return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
                    log.error("outbox sender ended with an error", exc_info=r)
            self._in_flight.clear()
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
            except Exception:
                log.exception("outbox sender could not read the outbox; trying again in 1 s")
                delay = 1.0
            if delay > 0:
                await self._wait_event(self._wake, delay)

    async def _dispatch_due(self) -> None:
        free = self._max_in_flight - len(self._in_flight)
        if free <= 0:
            return
        items = await self._outbox.due(time.time(), free, exclude=tuple(self._in_flight))
        for item in items:
            self._in_flight[item.run_id] = asyncio.create_task(self._send(item), name=f"outbox-send:{item.run_id}")

    async def _idle_delay(self) -> float:
        if len(self._in_flight) >= self._max_in_flight:
            return _IDLE_POLL_S  # a finishing call wakes us
        next_at = await self._outbox.next_attempt_at(exclude=tuple(self._in_flight))
        if next_at is None:
            return _IDLE_POLL_S
        return min(_IDLE_POLL_S, max(0.0, next_at - time.time()))

    async def _send(self, item: OutboxItem) -> None:
        try:
            await self._deliver(item)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The outbox could not ack/defer/park (disk, closed file). The record is still in the file, unchanged,
            # so it is sent again: at-least-once, and RecordRun is idempotent.
            log.exception(
                "outbox bookkeeping failed after a RecordRun attempt; the record stays pending",
                extra={"run_id": item.run_id, "version": item.version},
            )
        finally:
            self._in_flight.pop(item.run_id, None)
            self._wake.set()
            self._notify_progress()

    async def _deliver(self, item: OutboxItem) -> None:
        try:
            request = decode_request(item.payload)
        except DecodeError as exc:
            await self._park(item, f"stored payload is not a RecordRunRequest: {exc}")
            return
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
        self._counters.sent += 1
        if self._failing:
            self._failing = False
            log.info("RunsService accepts records again", extra={"run_id": item.run_id})
        outcome = runs_service_pb2.RecordOutcome.Name(response.outcome)
        if response.outcome == runs_service_pb2.RECORD_OUTCOME_IGNORED and item.terminal:
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
