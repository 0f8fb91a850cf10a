"""Sub-agents in the durable mode: a sub-agent call of a durable run starts a child run that is a durable run of its
own (a DBOS workflow whose workflow id is the child's run id, like any run), and waits for the workflow's result.

The call is one checkpointed step of the parent's workflow (at the step id reserved for it in call order,
effects.ToolStepReservations), whose result is the child's outcome with its usage and cost:
- a parent resumed after the step completed gets that result back and starts nothing;
- a parent resumed while the step was in flight runs it again: the child's run id is derived from the parent's run id
  and the step id (`child_run_id`), so it names the same child, whose workflow already exists and is not started
  again (it resumes on its own, as any pending run does, and completed model and tool calls of its own are not
  repeated); the step only waits for its result.
The child's workflow is started and awaited outside the parent's DBOS context (a workflow cannot start one from
inside a step): a top-level workflow whose run record names its parent, root and tool call.

Watchers: on the replica that runs both, the child's LiveRun hands its steps to its parent's (LiveRun.parent), as in
the embedded mode. Tokens: the child's node is under its parent's (a parent's token budget covers its children as
they run) when both run here; a child that ran elsewhere counts when its result comes (RunNode.child_ended_elsewhere).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import hashlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from dbos import DBOS, WorkflowHandleAsync
from opentelemetry import context as otel_context

from agentrun_core.domain import Cost, ErrorReason, RunError, RunStatus, TokenUsage
from execution_service.agents.spec import AgentSpec
from execution_service.durable.remote_cancel import TERMINAL_WORKFLOW_STATUSES
from execution_service.durable.workflow import RunEnd
from execution_service.engine.child_runs import CHILD_END_WAIT_S, ChildStart, ParentRun, started_child
from execution_service.engine.live_run import LiveRun
from execution_service.errors import ExecutionError
from execution_service.tools.base import ResolvedTool, ToolCallContext, ToolOutcome
from execution_service.tools.sub_agents import ChildResult, SubAgentTools

log = logging.getLogger(__name__)

CHILD_STEP = "agentrun.sub_agent_call"
# How often a parent polls for the end of a child's workflow.
RESULT_POLL_S = 0.1

T = TypeVar("T")


def child_run_id(parent_run_id: str, step_id: int) -> str:
    """The run id of the child that the parent's call at workflow step `step_id` starts: the same on every execution
    of the parent. A UUIDv7 with the parent's timestamp and 74 bits of a hash of (parent, step)."""
    timestamp = uuid.UUID(parent_run_id).int >> 80
    digest = int.from_bytes(hashlib.sha256(f"{parent_run_id}:{step_id}".encode()).digest()[:10], "big")
    rand_a, rand_b = (digest >> 62) & 0xFFF, digest & ((1 << 62) - 1)
    return str(uuid.UUID(int=(timestamp << 80) | (7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b))


def _outside_workflow(call: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """`call` in a task of its own, outside the calling workflow's DBOS context (nothing it does is an operation of
    the parent's workflow), in the caller's trace context (a child's run span is in its parent's trace)."""
    context = contextvars.Context()
    context.run(otel_context.attach, otel_context.get_current())
    return asyncio.create_task(call, context=context)


@dataclass(frozen=True, slots=True)
class ChildCall:
    """A sub-agent call's checkpointed result: what the parent's model reads, and the child's totals (None when no
    child ran)."""

    outcome: ToolOutcome
    child_run_id: str
    usage_with_descendants: TokenUsage | None = None
    cost_with_descendants: Cost | None = None


class ChildHost(Protocol):
    """What the durable run manager does for a parent's sub-agent calls."""

    async def start_child(self, child: ChildStart) -> None:
        """Starts the child's workflow (raises ExecutionError when it cannot start)."""

    async def record_not_started(self, child: ChildStart, problem: str) -> None:
        """Stores the child's reserved run id as a FAILED run (CHILD_NOT_STARTED)."""

    def adopt_child(self, child_run_id: str, parent: LiveRun) -> None:
        """A resumed parent's call found its child started by an earlier execution: the child's steps go to the
        parent's watchers here when the child runs here (now, or once its workflow resumes here)."""

    def end_child(self, child_run_id: str, parent: LiveRun) -> bool:
        """The parent's call was cancelled: cancels the child unless the replica is stopping (the child then resumes
        with its parent). True when the child was asked to end."""


class DurableChildren:
    """The ChildRunner (tools.sub_agents) of one durable run, and the body of its sub-agent calls' steps."""

    def __init__(self, host: ChildHost, parent: ParentRun, agents: Callable[[str], AgentSpec | None]) -> None:
        self._host = host
        self._parent = parent
        self.tools = SubAgentTools(agents, self)
        # The ends of the children this execution awaited, taken by the call's step result.
        self._ends: dict[str, RunEnd] = {}

    # --- the parent's step -----------------------------------------------------------------------------------

    async def call_step(self, tool: ResolvedTool, arguments: dict[str, Any], context: ToolCallContext) -> ChildCall:
        """Runs the sub-agent call (the body of its checkpointed step)."""
        outcome = await self.tools.call(tool, arguments, context)
        end = self._ends.pop(context.child_run_id, None)
        if end is None:
            return ChildCall(outcome, context.child_run_id)
        return ChildCall(outcome, end.run_id, end.usage_with_descendants, end.cost_with_descendants)

    def settle(self, call: ChildCall) -> None:
        """Counts a finished child's totals in the parent's tree (its cost always; its tokens when its node was not
        under the parent's here)."""
        if call.usage_with_descendants is None:
            return
        self._parent.tree.child_ended_elsewhere(call.child_run_id, call.usage_with_descendants)
        self._parent.tree.add_child_cost(call.cost_with_descendants)

    # --- ChildRunner -----------------------------------------------------------------------------------------

    async def run_child(
        self, agent: str, task: str, variables: dict[str, str], context: ToolCallContext
    ) -> ChildResult | str:
        start = ChildStart(agent, task, variables, context.child_run_id, self._for_call(context))
        if await _outside_workflow(DBOS.get_workflow_status_async(start.run_id)) is None:
            refused = self._parent.tree.child_refused(agent)
            if refused is not None:
                await self._host.record_not_started(start, refused)
                return refused
            starting = _outside_workflow(self._host.start_child(start))
            try:
                await asyncio.shield(starting)
            except asyncio.CancelledError:
                await self._end_started_child(start.run_id, starting)
                raise
            except ExecutionError as exc:
                log.info(
                    "sub-agent run not started",
                    extra={
                        "run_id": self._parent.base.id,
                        "agent": agent,
                        "reason": exc.reason,
                        "problem": exc.message,
                    },
                )
                await self._host.record_not_started(start, exc.message)
                return exc.message
        else:
            log.info(
                "a resumed sub-agent call waits for the child run an earlier execution started",
                extra={"run_id": self._parent.base.id, "child_run_id": start.run_id},
            )
            self._host.adopt_child(start.run_id, self._parent.live)
        end = await self._wait(start.run_id)
        self._ends[start.run_id] = end
        return ChildResult(end.run_id, end.status, end.final_response, end.error)

    async def not_started(
        self, agent: str, task: str, variables: dict[str, str], context: ToolCallContext, problem: str
    ) -> None:
        await self._host.record_not_started(
            ChildStart(agent, task, variables, context.child_run_id, self._for_call(context)), problem
        )

    def _for_call(self, context: ToolCallContext) -> ParentRun:
        return dataclasses.replace(self._parent, tool_call_id=context.call_id)

    async def _end_started_child(self, run_id: str, starting: asyncio.Task[None]) -> None:
        """The parent ended (cancelled, timed out) while its child was being started: the child, once started, ends
        as its parent does (here, or by a stored cancel request wherever it resumes)."""
        if await started_child(starting, self._parent.base.id):
            self._host.end_child(run_id, self._parent.live)

    async def _wait(self, run_id: str) -> RunEnd:
        waiting = _outside_workflow(_result(run_id))
        try:
            return await asyncio.shield(waiting)
        except asyncio.CancelledError:
            if self._host.end_child(run_id, self._parent.live):
                await asyncio.wait([waiting], timeout=CHILD_END_WAIT_S)
            waiting.cancel()
            raise


async def unfinished_runs(run_ids: list[str]) -> list[str]:
    """Those of `run_ids` whose workflow exists and has not ended (read outside the calling workflow: not one of
    its operations)."""
    unfinished = []
    for run_id in dict.fromkeys(run_ids):
        status = await _outside_workflow(DBOS.get_workflow_status_async(run_id))
        if status is not None and status.status not in TERMINAL_WORKFLOW_STATUSES:
            unfinished.append(run_id)
    return unfinished


async def _result(run_id: str) -> RunEnd:
    """The end of the child's workflow (a workflow that failed or was cancelled outside agentrun: FAILED)."""
    handle: WorkflowHandleAsync[Any] = await DBOS.retrieve_workflow_async(run_id)
    try:
        end = await handle.get_result(polling_interval_sec=RESULT_POLL_S)
    except Exception as exc:
        log.error("a sub-agent run's workflow did not return its end", exc_info=exc, extra={"run_id": run_id})
        return RunEnd(run_id, RunStatus.FAILED, error=RunError(ErrorReason.INTERNAL, f"{type(exc).__name__}: {exc}"))
    if not isinstance(end, RunEnd):
        problem = RunError(ErrorReason.INTERNAL, "the run's workflow ended without its outcome")
        return RunEnd(run_id, RunStatus.FAILED, error=problem)
    return end
