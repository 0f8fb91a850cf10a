"""Crash recovery: runs this instance was executing when it died are recorded as INTERRUPTED at the next start.

The live-run journal (Outbox.live_runs) holds the latest RUNNING snapshot of every run in progress: written with the
RUNNING record at start (OutboxPublisher.record), refreshed by `checkpoint` after each model turn, removed in the
same transaction that stores the run's terminal record. Whatever is still in it at start-up was interrupted.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from agentrun.runs.v1 import run_pb2
from google.protobuf.message import DecodeError

from agentrun_core.domain import ErrorReason, Run, RunStatus
from agentrun_core.proto_convert import duration_to_pb, timestamp_from_pb, timestamp_to_pb
from execution_service.publish.outbox import Outbox, PutResult
from execution_service.publish.records import decode_request, encode_run

log = logging.getLogger(__name__)

INTERRUPTED_MESSAGE = "the execution service stopped while the run was in progress (recovered at start-up)"


async def checkpoint(outbox: Outbox, run: Run) -> bool:
    """Rewrites the journal snapshot of a RUNNING run so an interruption keeps its steps so far.

    Cheap: one serialization and one small transaction without fsync (see Outbox). Returns False, changing
    nothing, when the run is not live (never started here, or its terminal record was already put): a late
    checkpoint never brings a finished run back.
    """
    if run.status.is_terminal:
        log.debug("checkpoint of a terminal run ignored", extra={"run_id": run.id, "status": str(run.status)})
        return False
    updated = await outbox.update_live(run.id, encode_run(run))
    if not updated:
        log.debug("checkpoint of a run that is not live ignored", extra={"run_id": run.id})
    return updated


def interrupted_record(snapshot: bytes, now: datetime) -> bytes:
    """The terminal INTERRUPTED RecordRunRequest built from a RUNNING snapshot (steps and usage kept)."""
    request = decode_request(snapshot)
    run = request.run
    run.status = run_pb2.RUN_STATUS_INTERRUPTED
    run.end_time.CopyFrom(timestamp_to_pb(now))
    if run.HasField("start_time"):
        duration = now - timestamp_from_pb(run.start_time)
        run.duration.CopyFrom(duration_to_pb(max(duration, timedelta(0))))
    run.error.CopyFrom(run_pb2.RunError(reason=ErrorReason.INTERRUPTED.value, message=INTERRUPTED_MESSAGE))
    return request.SerializeToString()


async def recover_interrupted(outbox: Outbox, now: datetime | None = None) -> list[str]:
    """Puts an INTERRUPTED terminal record for every run left in the live journal; returns their ids.

    Call before starting the publisher. A journal entry that cannot be parsed is logged at ERROR and left in
    place (never dropped); the other runs are still recovered.
    """
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    recovered: list[str] = []
    for run_id, snapshot in await outbox.live_runs():
        try:
            payload = interrupted_record(snapshot, now)
        except DecodeError:
            log.exception(
                "live-run snapshot is unreadable; left in the journal for inspection",
                extra={"run_id": run_id, "outbox": str(outbox.path)},
            )
            continue
        result = await outbox.put(run_id, payload, terminal=True, replace_terminal=False)
        if result is PutResult.IGNORED:
            log.warning("run already had a terminal record; not marked INTERRUPTED", extra={"run_id": run_id})
            continue
        log.warning(
            "run interrupted by a stop of the execution service; recorded as INTERRUPTED",
            extra={"run_id": run_id, "status": RunStatus.INTERRUPTED.value},
        )
        recovered.append(run_id)
    return recovered
