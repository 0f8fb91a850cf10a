"""The outbox publisher's counters as OpenTelemetry observable instruments (read when metrics are collected)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from execution_service.publish.outbox import Outbox, OutboxError
from execution_service.publish.publisher import OutboxPublisher

log = logging.getLogger(__name__)


def register_publisher_metrics(meter: Meter, publisher: OutboxPublisher, outbox: Outbox) -> None:
    """agentrun.outbox.{sent,retried,parked,config_errors} (counters of records since start) and
    agentrun.outbox.pending / agentrun.outbox.parked_records (records in the outbox file now)."""

    def counter(field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(getattr(publisher.counters, field))]

        return observe

    for field, description in (
        ("sent", "Records RunsService acknowledged (RecordRuns results, or RecordRun calls that succeeded)"),
        ("retried", "Failed delivery attempts of a record scheduled for another try"),
        ("parked", "Records RunsService rejected, moved to the dead-letter state"),
        ("config_errors", "UNAUTHENTICATED / PERMISSION_DENIED / UNIMPLEMENTED answers from RunsService"),
    ):
        meter.create_observable_counter(
            f"agentrun.outbox.{field}",
            callbacks=[counter(field)],
            unit="{record}",
            description=description,
        )

    def stored(_options: CallbackOptions) -> Iterable[Observation]:
        try:
            counts = outbox.counts_blocking(timeout_s=1.0)
        except (OutboxError, TimeoutError) as exc:
            log.debug("outbox metrics skipped: %s", exc, extra={"outbox": str(outbox.path)})
            return []
        return [
            Observation(counts.pending, {"agentrun.outbox.state": "pending"}),
            Observation(counts.parked, {"agentrun.outbox.state": "parked"}),
        ]

    meter.create_observable_gauge(
        "agentrun.outbox.records",
        callbacks=[stored],
        unit="{record}",
        description="Records in the outbox file, by state (pending includes in flight; parked: dead-letter)",
    )
