"""A run whose workflow fails ends FAILED, durably, instead of staying RUNNING.

Any exception that escapes the run's body (a resumed run whose replay diverged from its recorded execution: DBOS
finds another operation than the one it recorded at a step id; or any unexpected error) is caught by the run
workflow, which then records the run's end: an error step and RunFinished in the run's stream, and the FAILED record
published to RunsService, as the normal end does.

After a divergence the workflow's own step ids can no longer be trusted (the next one may be recorded for another
operation), so the failure path runs its operations from a fixed, reserved step id (`FAILURE_STEP_ID`) on: the same
ids on every execution of the failure path, whatever step the failure came at. Its first operation is one
checkpointed step that decides everything the rest writes (the terminal record, whether RunStarted is still to be
written), so an execution of the failure path that is itself interrupted and resumed writes and publishes the same
things once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dbos._context import get_local_dbos_context
from dbos._error import DBOSUnexpectedStepError

from agentrun_core.domain import (
    ErrorReason,
    ExecutionStep,
    Run,
    RunError,
    RunStatus,
)
from execution_service.durable.recorder import ReplayDiverged
from execution_service.durable.stream import StreamPrefix
from execution_service.engine.ended_run import ended_from_steps
from execution_service.engine.events import RunFinishedEvent

# The DBOS step id the failure path's operations start after. A run's normal path records no DBOS operation (its
# calls are checkpointed in its journal: execution_service.durable.checkpoints), and a sub-agent's few stay far below.
FAILURE_STEP_ID = 1_000_000


def enter_failure_steps() -> None:
    """Makes the running workflow's next operations take the step ids reserved for its failure path.

    The one use of DBOS's workflow context (an underscore API): DBOS numbers a workflow's operations with the
    context's `function_id`, incremented as each operation starts."""
    ctx = get_local_dbos_context()
    if ctx is None or not ctx.is_workflow():
        raise RuntimeError("the failure path of a durable run must run in its workflow")
    if ctx.function_id >= FAILURE_STEP_ID:
        raise RuntimeError(
            f"workflow {ctx.workflow_id} reached step id {ctx.function_id}, beyond the failure path's reserved ids"
        )
    ctx.function_id = FAILURE_STEP_ID


def workflow_error(error: Exception, replica: str) -> RunError:
    """The run's error for an exception that escaped its workflow: DURABLE_REPLAY_DIVERGED when the resumed run no
    longer replays its recorded execution, else INTERNAL, with the exception's message."""
    if isinstance(error, (DBOSUnexpectedStepError, ReplayDiverged)):
        return RunError(
            ErrorReason.DURABLE_REPLAY_DIVERGED,
            f"replica {replica} could not resume the run: its execution no longer matches the recorded one "
            f"(the agent, its model or its tools changed since the run started?): {error}",
        )
    return RunError(ErrorReason.INTERNAL, f"internal error: {type(error).__name__}: {error}")


@dataclass(frozen=True, slots=True)
class FailedRun:
    """The failure path's checkpointed decision: the terminal record, and whether the stream still lacks RunStarted
    (the workflow failed before its first write)."""

    terminal: Run
    write_started: bool


def failed_run(base: Run, prefix: StreamPrefix, error: RunError, end: datetime) -> FailedRun:
    """The FAILED record of a run whose workflow failed: the steps its stream holds (`prefix`: what its clients saw),
    then a step with `error` at `end`; its usage, cost and tools are those of the steps."""
    steps = (*prefix.steps, ExecutionStep(base.id, len(prefix.steps) + 1, end, error))
    return FailedRun(ended_from_steps(base, steps, RunStatus.FAILED, error, end), write_started=prefix.started is None)


def failed_run_finished(terminal: Run, recorded: bool) -> RunFinishedEvent:
    """The RunFinished of a run ended FAILED outside its loop (a failed workflow, a run DBOS gave up on)."""
    assert terminal.end_time is not None and terminal.duration is not None
    return RunFinishedEvent(
        run_id=terminal.id,
        status=terminal.status,
        final_response="",
        token_usage=terminal.token_usage,
        duration=terminal.duration,
        end_time=terminal.end_time,
        steps_taken=terminal.steps_taken,
        tool_call_count=len(terminal.tool_calls),
        error=terminal.error,
        cost=terminal.cost,
        recorded=recorded,
    )
