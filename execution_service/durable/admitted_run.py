"""A run a replica started, as its starter follows it wherever it executes."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass

from execution_service.durable.remote_tree import RemoteTree
from execution_service.engine.events import RunEvent
from execution_service.engine.live_run import LiveRun


@dataclass
class AdmittedRun(LiveRun):
    """A run this replica started, as its starter follows it wherever it executes (`follower`: RunQueued while it
    waits, then its stream or, when this replica took it, the run in memory). A LiveRun for RunManager.start's type;
    not kept in this manager's runs (the replica that executes the run holds it)."""

    follower: RemoteTree | None = None

    def follow(self, from_sequence: int = 0) -> AsyncGenerator[RunEvent]:
        assert self.follower is not None
        return self.follower.follow(from_sequence)

    def follow_past(self, last_received: Mapping[str, int]) -> AsyncGenerator[RunEvent]:
        assert self.follower is not None
        return self.follower.follow_past(last_received)

    @property
    def is_finished(self) -> bool:
        return self.follower is not None and self.follower.is_finished
