"""Child runs: how a run's sub-agent tool call starts a run of its own and waits for its end (tools.sub_agents).

A child is an ordinary run of the manager (its own id, agent, model, limits, steps, status, published on its own)
that names its parent, its root and the parent's tool call. Its steps reach the parent's watchers as they happen
(LiveRun.parent); its token usage counts against its ancestors' budgets as it happens, and its cost is added to
its parent's when it ends (RunNode). Cancelling the parent's tool call (the parent was cancelled, timed out or
interrupted) cancels the child, and the call returns only once the child has ended and been recorded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agentrun_core.domain import Run, RunStatus
from execution_service.engine.live_run import LiveRun
from execution_service.engine.run_tree import RunNode
from execution_service.errors import ExecutionError
from execution_service.tools.base import ToolCallContext
from execution_service.tools.sub_agents import ChildResult

log = logging.getLogger(__name__)

# How long a cancelled parent's tool call waits for its cancelled child to record its end.
CHILD_END_WAIT_S = 15.0


@dataclass(frozen=True, slots=True)
class ParentRun:
    """For a child run: the run whose tool call starts it, and that call."""

    live: LiveRun
    base: Run
    tree: RunNode
    tool_call_id: str
    # The model override the parent was started with ("" when none): its children run on it too.
    model_override: str = ""

    @property
    def root_run_id(self) -> str:
        return self.base.root_run_id or self.base.id


def child_fields(parent: ParentRun | None) -> dict[str, Any]:
    """The composition fields (of Run and of RunStartedEvent alike) of a run started by `parent`'s tool call; none
    for a top-level run. (A child is in its parent's session: the caller sets session_id.)"""
    if parent is None:
        return {}
    return {
        "parent_run_id": parent.base.id,
        "root_run_id": parent.root_run_id,
        "parent_tool_call_id": parent.tool_call_id,
        "depth": parent.base.depth + 1,
    }


@dataclass(frozen=True, slots=True)
class ChildStart:
    agent: str
    task: str
    variables: dict[str, str]
    run_id: str
    parent: ParentRun


class ChildRuns:
    """The ChildRunner of one parent run (tools.sub_agents.ChildRunner). A child that cannot start is stored as a
    FAILED run (CHILD_NOT_STARTED) under its reserved id, so the call's child_run_id always names a run."""

    def __init__(
        self,
        start: Callable[[ChildStart], Awaitable[LiveRun]],
        record_not_started: Callable[[ChildStart, str], Awaitable[None]],
        cancel: Callable[[str], None],
        live: LiveRun,
        base: Run,
        tree: RunNode,
        model_override: str,
    ) -> None:
        self._start = start
        self._record_not_started = record_not_started
        self._cancel = cancel
        self._live = live
        self._base = base
        self._tree = tree
        self._model_override = model_override

    async def run_child(
        self, agent: str, task: str, variables: dict[str, str], context: ToolCallContext
    ) -> ChildResult | str:
        parent = ParentRun(self._live, self._base, self._tree, context.call_id, self._model_override)
        start = ChildStart(agent, task, variables, context.child_run_id, parent)
        refused = self._tree.child_refused(agent)
        if refused is not None:
            await self._record_not_started(start, refused)
            return refused
        starting = asyncio.ensure_future(self._start(start))
        try:
            child = await asyncio.shield(starting)
        except asyncio.CancelledError:
            await self._end_started_child(starting)
            raise
        except ExecutionError as exc:
            log.info(
                "sub-agent run not started",
                extra={"run_id": self._live.run_id, "agent": agent, "reason": exc.reason, "problem": exc.message},
            )
            await self._record_not_started(start, exc.message)
            return exc.message
        assert child.task is not None
        try:
            await asyncio.shield(child.task)
        except asyncio.CancelledError:
            self._cancel(child.run_id)
            await asyncio.wait([child.task], timeout=CHILD_END_WAIT_S)
            raise
        finished = child.finished
        if finished is None:  # the child's task ended without finishing the run: a bug, said as such
            return ChildResult(child.run_id, RunStatus.FAILED)
        self._tree.add_child_cost(finished.cost_with_descendants or finished.cost)
        return ChildResult(finished.run_id, finished.status, finished.final_response, finished.error)

    async def _end_started_child(self, starting: asyncio.Future[LiveRun]) -> None:
        """The parent ended (cancelled, timed out) while its child was being started: the child, once started, ends
        as its parent does."""
        if not await started_child(starting, self._live.run_id):
            return
        child = starting.result()
        if child.task is not None:
            self._cancel(child.run_id)
            await asyncio.wait([child.task], timeout=CHILD_END_WAIT_S)

    async def not_started(
        self, agent: str, task: str, variables: dict[str, str], context: ToolCallContext, problem: str
    ) -> None:
        parent = ParentRun(self._live, self._base, self._tree, context.call_id, self._model_override)
        await self._record_not_started(ChildStart(agent, task, variables, context.child_run_id, parent), problem)


async def started_child(starting: asyncio.Future[Any], parent_run_id: str) -> bool:
    """Lets a child's start whose parent ended meanwhile finish (cut short, it left a child recorded RUNNING whose
    task never began, or a child workflow nobody ends); whether it started the child (False too when it did not
    finish within CHILD_END_WAIT_S, logged)."""
    await asyncio.wait([starting], timeout=CHILD_END_WAIT_S)
    if not starting.done():
        log.error("a sub-agent run's start outlasted its parent's end", extra={"run_id": parent_run_id})
        return False
    return not starting.cancelled() and starting.exception() is None
