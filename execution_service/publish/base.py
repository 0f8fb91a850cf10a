"""Where finished (and started) runs go. Implementations must not lose a run once `record` returned."""

from __future__ import annotations

from typing import Protocol

from agentrun_core.domain import Run


class RunSink(Protocol):
    async def record(self, run: Run) -> None:
        """Durably accepts the run (RUNNING at start, terminal at the end) for delivery to RunsService."""
        ...

    async def checkpoint(self, run: Run) -> bool:
        """Remembers a RUNNING run's steps so far, so a crash publishes them as INTERRUPTED. Cheap, not fsynced."""
        ...

    async def wait_delivered(self, run_id: str, timeout_s: float) -> bool:
        """After `record` of a terminal run: waits at most `timeout_s` until RunsService has acknowledged it. True
        once it has; False on timeout or while RunsService is known to be failing (the run stays durable anyway)."""
        ...
