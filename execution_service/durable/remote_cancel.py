"""What a cancel of a run another replica executes needs to know: whether the run's end was decided already (its
stream's RunFinished, or the end its execution checkpointed before its replica died), and, for an immediate cancel,
whether the run then ended CANCELLED."""

from __future__ import annotations

import logging

from dbos import DBOS

from agentrun_core.domain import RunStatus
from agentrun_core.echo import shown
from execution_service.durable.checkpoints import read_recorded_result
from execution_service.durable.stream import finished_status
from execution_service.durable.workflow import END_STEP, DecidedEnd
from execution_service.errors import RunAlreadyFinished

log = logging.getLogger(__name__)

TERMINAL_WORKFLOW_STATUSES = frozenset({"SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"})
# CancelRun(IMMEDIATE) through a replica that does not run the run waits for the run's end, to answer whether the
# cancel took effect: this long for the run to stop (its replica stops an in-flight call within a second), beyond the
# wait for RunsService that comes before a run's RunFinished (limits.publish_wait_s).
CANCEL_STOP_S = 2.0


async def refuse_if_ended(run_id: str) -> None:
    """RunAlreadyFinished when the run has ended or its end was decided (naming that end when it is known)."""
    ended = await finished_status(run_id) or await decided_status(run_id)
    if ended is not None:
        raise RunAlreadyFinished(f"run {shown(run_id)} already finished with status {ended.value}")
    status = await DBOS.get_workflow_status_async(run_id)
    if status is not None and status.status in TERMINAL_WORKFLOW_STATUSES:
        raise RunAlreadyFinished(f"run {shown(run_id)} already finished")


async def confirm_cancelled(run_id: str, *, wait_s: float) -> None:
    """An immediate cancel of a run another replica executes: that replica may have decided the run's outcome (its
    answer or error came) before the request reached it, and then the cancel changes nothing. Waits (at most
    `wait_s`) for the run's end in its stream: an end other than CANCELLED is RunAlreadyFinished naming
    it, as on the replica that runs the run. No end within the wait (its replica died) leaves the cancel accepted
    (the run resumes with the request stored, and ends CANCELLED), unless that replica had decided the run's end
    before it died: a resumption records that end (`DurableRunManager._end_as_decided`), which the answer names."""
    ended = await finished_status(run_id, wait_s=wait_s) or await decided_status(run_id)
    if ended is None:
        log.info("a cancelled run has not ended yet; its cancel is stored", extra={"run_id": run_id})
    elif ended is not RunStatus.CANCELLED:
        raise RunAlreadyFinished(
            f"run {shown(run_id)} already finished with status {ended.value}: its outcome was decided before the "
            "cancel reached the replica that runs it"
        )


async def decided_status(run_id: str) -> RunStatus | None:
    """The status of the end the run's execution decided and checkpointed, recorded or not (None: not decided yet)."""
    decided = await read_recorded_result(run_id, END_STEP)
    return decided.terminal.status if isinstance(decided, DecidedEnd) else None
