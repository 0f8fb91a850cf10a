"""Runs whose workflow DBOS gave up on end FAILED instead of staying RUNNING for ever.

DBOS counts the recoveries of a workflow that never completes; past the workflow's limit (100 by default) it marks it
MAX_RECOVERY_ATTEMPTS_EXCEEDED and never starts it again. That happens when each execution of the run ends its replica's
process (out of memory on a huge tool result, a crash in a native library): our code never runs again for that run, so
no failure path can end it. Every replica looks for such runs every `AGENTRUN_GIVEN_UP_CHECK_INTERVAL_S` (a cheap query
on DBOS's workflow table; durable.periodic) and ends each one: FAILED with reason DURABLE_RECOVERY_EXHAUSTED, the record
published to RunsService (the steps its stream holds, then an error step at the time DBOS gave up), the error step and
RunFinished written to its stream (its watchers on any replica get the end), then the workflow is marked CANCELLED so it
is not looked at again. Several replicas may end the same run at once: every write is idempotent (the same end time, the
journal keeps the first entry at an offset, RunsService's upsert keeps one record).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from dbos import DBOS

from agentrun_core.domain import ErrorReason, RunError
from execution_service.durable.workflow import WORKFLOW_NAME, DurableRunInput

log = logging.getLogger(__name__)

GIVEN_UP_STATUS = "MAX_RECOVERY_ATTEMPTS_EXCEEDED"

# Ends one given-up run (DurableRunManager.end_given_up): True once its FAILED record is stored.
EndRun = Callable[[DurableRunInput, RunError, datetime], Awaitable[bool]]


def given_up_error(attempts: int | None) -> RunError:
    tried = f"{attempts} times" if attempts else "too many times"
    return RunError(
        ErrorReason.DURABLE_RECOVERY_EXHAUSTED,
        f"the run's execution was started again {tried} and each one ended its replica's process (DBOS "
        "MAX_RECOVERY_ATTEMPTS_EXCEEDED), so it was given up: look in the replicas' logs for a crash or an "
        "out-of-memory kill while this run executed",
    )


class GivenUpRuns:
    def __init__(self, end_run: EndRun) -> None:
        self._end_run = end_run

    async def sweep(self) -> list[str]:
        """Ends every run DBOS gave up on; returns the ids of those ended now."""
        statuses = await DBOS.list_workflows_async(status=GIVEN_UP_STATUS, name=WORKFLOW_NAME, load_output=False)
        ended: list[str] = []
        for status in statuses:
            inputs = status.input
            run = inputs["args"][0] if inputs is not None and inputs["args"] else None
            if not isinstance(run, DurableRunInput):
                log.error(
                    "a given-up run workflow has no readable input; left as it is", extra={"run_id": status.workflow_id}
                )
                continue
            gave_up_at = datetime.fromtimestamp((status.updated_at or 0) / 1000, UTC)
            if not await self._end_run(run, given_up_error(status.recovery_attempts), gave_up_at):
                log.warning(
                    "RunsService did not take a given-up run's record; trying again", extra={"run_id": run.run_id}
                )
                continue
            await DBOS.cancel_workflow_async(run.run_id)  # leaves DBOS's given-up list: not looked at again
            ended.append(run.run_id)
        return ended
