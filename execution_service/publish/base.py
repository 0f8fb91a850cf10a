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
