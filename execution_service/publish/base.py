"""Where finished (and started) runs go. Implementations must not lose a run once `record` returned."""

from __future__ import annotations

from typing import Protocol

from agentrun_core.domain import ExecutionStep, Run


class RunSink(Protocol):
    async def record(self, run: Run) -> None:
        """Durably accepts the run (RUNNING at start, terminal at the end) for delivery to RunsService."""
        ...

    def journal_step(self, step: ExecutionStep) -> bytes | None:
        """Journals a step of a RUNNING run the moment it is recorded, before any client sees it, so that a crash
        publishes the run INTERRUPTED with it (publish.step_journal). Synchronous and cheap; never raises. Returns
        the step as journaled (a serialized agentrun.runs.v1.ExecutionStep), which the stream then sends as is, or
        None when the sink does not serialize steps."""
        ...

    async def wait_delivered(self, run_id: str, timeout_s: float) -> bool:
        """After `record` of a terminal run: waits at most `timeout_s` until RunsService has acknowledged it. True
        once it has; False on timeout or while RunsService is known to be failing (the run stays durable anyway)."""
        ...
