"""A run in memory: its event log, which any number of watchers replay and then follow as it grows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from agentrun_core.domain import ExecutionStep
from execution_service.engine.events import RunEvent, RunFinishedEvent, RunStartedEvent, StepEvent
from execution_service.engine.loop import RunControl


@dataclass
class LiveRun:
    run_id: str
    user: str
    started: RunStartedEvent
    control: RunControl = field(default_factory=RunControl)
    task: asyncio.Task[None] | None = None
    cancel_requested: bool = False
    # Every event after RunStarted, in order: the steps, then RunFinished.
    _events: list[StepEvent | RunFinishedEvent] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    finished: RunFinishedEvent | None = None

    def append_step(self, step: ExecutionStep) -> None:
        self._append(StepEvent(step))

    def finish(self, event: RunFinishedEvent) -> None:
        self.finished = event
        self._append(event)

    def _append(self, event: StepEvent | RunFinishedEvent) -> None:
        self._events.append(event)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    @property
    def is_finished(self) -> bool:
        return self.finished is not None

    async def follow(self, from_sequence: int = 0) -> AsyncIterator[RunEvent]:
        """RunStarted, the steps with sequence >= from_sequence, then each new event until RunFinished."""
        yield self.started
        index = max(from_sequence - 1, 0)  # steps are numbered from 1 and stored in order
        while True:
            while index < len(self._events):
                event = self._events[index]
                index += 1
                yield event
                if isinstance(event, RunFinishedEvent):
                    return
            await self._changed.wait()
