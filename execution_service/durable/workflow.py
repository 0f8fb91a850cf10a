"""The run workflow: one DBOS workflow per run, whose workflow id is the run id.

Its input is everything the run needs that a request gave (the agent as it was when the run started, the rendered
prompt, the RUNNING record), so any replica can execute or resume it. Its body is the replica's
DurableRunManager.execute, bound at launch (`bind`): the agent loop with its effects wrapped as DBOS steps. An
exception that escapes it (a replay that diverged, any unexpected error) ends the run FAILED (`fail`; see
execution_service.durable.failure), so no run stays RUNNING because its workflow failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from dbos import DBOS

from agentrun_core.domain import Run
from execution_service.agents.spec import AgentSpec, RenderedPrompt
from execution_service.engine.composition import RunSetup
from execution_service.engine.events import RunQueuedEvent, RunStartedEvent

WORKFLOW_NAME = "agentrun.run"


@dataclass(frozen=True, slots=True)
class DurableRunInput:
    """The workflow's input (checkpointed by DBOS with the workflow)."""

    run_id: str
    base: Run
    started: RunStartedEvent
    agent: AgentSpec
    prompt: RenderedPrompt
    # The model the run was asked for (the request's, else the agent's), for this replica's provider factory.
    model: str
    # A session's history or a fork's replay (execution_service.engine.composition), as prepared when it started.
    setup: RunSetup = field(default_factory=RunSetup)
    # Its RunQueued (the first entry of its stream if it ends in the queue without starting), and whether its starter
    # showed it QUEUED (then followers send that first). `started` and `base` carry the enqueue time until the run
    # leaves the queue (execution_service.durable.admission).
    queued: RunQueuedEvent | None = None
    shown_queued: bool = False


class RunExecutor(Protocol):
    async def execute(self, run: DurableRunInput) -> None: ...

    async def fail(self, run: DurableRunInput, error: Exception) -> None:
        """Ends the run FAILED after `error` escaped `execute` (execution_service.durable.failure)."""


_executor: RunExecutor | None = None


def bind(executor: RunExecutor | None) -> None:
    """Makes `executor` run this process's run workflows (DBOS is one per process, and so is this)."""
    global _executor
    _executor = executor


@DBOS.workflow(name=WORKFLOW_NAME)
async def run_workflow(run: DurableRunInput) -> None:
    if _executor is None:
        raise RuntimeError("no durable run executor is bound in this process (execution_service.durable.workflow)")
    try:
        await _executor.execute(run)
    except Exception as exc:  # a run whose workflow fails ends FAILED rather than RUNNING forever
        await _executor.fail(run, exc)
