"""The run workflow: one DBOS workflow per run, whose workflow id is the run id.

Its input is everything the run needs that a request gave (the agent as it was when the run started, the rendered
prompt, the RUNNING record), so any replica can execute or resume it. Its body is the replica's
DurableRunManager.execute, bound at launch (`bind`): the agent loop with its effects wrapped as DBOS steps. An
exception that escapes it (a replay that diverged, any unexpected error) ends the run FAILED (`fail`; see
execution_service.durable.failure), so no run stays RUNNING because its workflow failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from dbos import DBOS

from agentrun_core.domain import Cost, Run, RunError, RunStatus, TokenUsage
from execution_service.agents.spec import AgentSpec, RenderedPrompt
from execution_service.engine.composition import RunSetup
from execution_service.engine.events import RunQueuedEvent, RunStartedEvent

WORKFLOW_NAME = "agentrun.run"
# The checkpoint of the end a run's execution decided (DecidedEnd), before any of it is streamed or published.
END_STEP = "agentrun.run_end"


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
    # The model override the run was started with ("" when none): its sub-agents' runs run on it too.
    model_override: str = ""
    # The span that started the run (16 hex digits; "" when none): each execution's `invoke_agent` span is its child,
    # in the run's trace (base.trace_id), on whichever replica runs it.
    trace_parent: str = ""
    # Its RunQueued (the first entry of its stream if it ends in the queue without starting), and whether its starter
    # showed it QUEUED (then followers send that first). `started` and `base` carry the enqueue time until the run
    # leaves the queue (execution_service.durable.admission).
    queued: RunQueuedEvent | None = None
    shown_queued: bool = False


@dataclass(frozen=True, slots=True)
class RunEnd:
    """How the run ended: the workflow's result (checkpointed by DBOS), which a parent run awaits for its sub-agent's
    run (execution_service.durable.children). Usage and cost include the run's descendants."""

    run_id: str
    status: RunStatus
    final_response: str = ""
    error: RunError | None = None
    usage_with_descendants: TokenUsage = field(default_factory=TokenUsage)
    cost_with_descendants: Cost | None = None


@dataclass(frozen=True, slots=True)
class DecidedEnd:
    """The end a run's execution decided (its terminal record, and its tool calls for RunFinished), checkpointed
    before it is recorded: a resumption of a run whose replica died while it recorded its end (waiting for RunsService,
    say) records this end instead of running the run again, so an outcome decided by a cancel or a timeout stands."""

    terminal: Run
    end: datetime
    tool_calls: int


class RunExecutor(Protocol):
    async def execute(self, run: DurableRunInput) -> RunEnd: ...

    async def fail(self, run: DurableRunInput, error: Exception) -> RunEnd:
        """Ends the run FAILED after `error` escaped `execute` (execution_service.durable.failure)."""


_executor: RunExecutor | None = None


def bind(executor: RunExecutor | None) -> None:
    """Makes `executor` run this process's run workflows (DBOS is one per process, and so is this)."""
    global _executor
    _executor = executor


@DBOS.workflow(name=WORKFLOW_NAME)
async def run_workflow(run: DurableRunInput) -> RunEnd:
    if _executor is None:
        raise RuntimeError("no durable run executor is bound in this process (execution_service.durable.workflow)")
    try:
        return await _executor.execute(run)
    except Exception as exc:  # a run whose workflow fails ends FAILED rather than RUNNING forever
        return await _executor.fail(run, exc)
