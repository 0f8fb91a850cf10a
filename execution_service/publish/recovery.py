"""Crash recovery: runs this instance was executing when it died are recorded as INTERRUPTED at the next start, with
every step they had recorded.

Two journals tell what was in flight. The outbox's live-run table (Outbox.live_runs) holds the RUNNING record of
every run in progress: written with the RUNNING record at start (OutboxPublisher.record), removed in the same
transaction that stores the run's terminal record. The live-steps journal (publish.step_journal) holds each such
run's steps, each written before any client saw it. Whatever is still in the live-run table at start-up was
interrupted: its INTERRUPTED record is rebuilt from its RUNNING record and its journaled steps, with the totals a
finished run has (token usage summed over its model calls, cost, tool calls, tools used, steps taken, context window),
an INTERRUPTED error step after its last step, and tool calls still in flight marked CANCELLED. The run ends at the
last moment it is known to have been alive, its last journaled step (its start when it journaled none), not at the
recovery, which may come hours later.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from google.protobuf.message import DecodeError

from agentrun_core.domain import (
    ErrorReason,
    ExecutionStep,
    ModelCall,
    Run,
    RunError,
    RunStatus,
    ToolCallStatus,
)
from agentrun_core.proto_convert import ConversionError, run_from_pb
from execution_service.engine.ended_run import ended_from_steps
from execution_service.publish.outbox import Outbox, PutResult
from execution_service.publish.records import decode_request, encode_run
from execution_service.publish.step_journal import StepJournal

log = logging.getLogger(__name__)

INTERRUPTED_MESSAGE = "the execution service stopped while the run was in progress (recovered at start-up)"
IN_FLIGHT_RESULT = "the execution service stopped while the call was in flight"


def interrupted_run(running: Run, journaled: Sequence[ExecutionStep]) -> Run:
    """The terminal INTERRUPTED run from its RUNNING record and its journaled steps (the steps of the RUNNING record
    when nothing was journaled: an outbox written before the live-steps journal existed). It ends at its last step's
    time (its start time without steps): the last moment it is known to have run."""
    steps = list(journaled or running.execution_steps)
    end = max([running.start_time, *(step.time for step in steps)])
    error = RunError(ErrorReason.INTERRUPTED.value, INTERRUPTED_MESSAGE)
    steps.append(ExecutionStep(run_id=running.id, sequence=len(steps) + 1, time=end, payload=error))
    ended = ended_from_steps(running, steps, RunStatus.INTERRUPTED, error, end)
    calls = [step.payload for step in steps if isinstance(step.payload, ModelCall)]
    return dataclasses.replace(
        ended,
        tool_calls=tuple(
            dataclasses.replace(call, status=ToolCallStatus.CANCELLED, result=IN_FLIGHT_RESULT, is_error=True)
            if call.status is ToolCallStatus.RUNNING
            else call
            for call in ended.tool_calls
        ),
        max_context_window_used=max((call.context_window_used for call in calls), default=0.0),
    )


async def recover_interrupted(outbox: Outbox, journal: StepJournal) -> list[str]:
    """Puts an INTERRUPTED terminal record for every run left in the live-run table; returns their ids.

    Call before starting the publisher. A RUNNING record that cannot be read is logged at ERROR and left in place
    (never dropped); the other runs are still recovered. Journal files of runs that are not live are deleted.
    """
    recovered: list[str] = []
    live = await outbox.live_runs()
    for run_id, snapshot in live:
        try:
            running = run_from_pb(decode_request(snapshot).run)
        except (DecodeError, ConversionError):
            log.exception(
                "live-run snapshot is unreadable; left in the journal for inspection",
                extra={"run_id": run_id, "outbox": str(outbox.path)},
            )
            continue
        run = interrupted_run(running, journal.read(run_id))
        result = await outbox.put(run_id, encode_run(run), terminal=True, replace_terminal=False)
        journal.forget(run_id)
        if result is PutResult.IGNORED:
            log.warning("run already had a terminal record; not marked INTERRUPTED", extra={"run_id": run_id})
            continue
        log.warning(
            "run interrupted by a stop of the execution service; recorded as INTERRUPTED",
            extra={"run_id": run_id, "status": RunStatus.INTERRUPTED.value, "steps": len(run.execution_steps)},
        )
        recovered.append(run_id)
    journal.remove_stray({run_id for run_id, _ in await outbox.live_runs()})
    return recovered
