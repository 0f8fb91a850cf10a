"""remote_tree: a watcher of a run another replica executes (or one this replica runs, followed through its
stream's reader) gets the reader's error when its stream cannot be read, instead of waiting for good."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping

import pytest
from agentrun.execution.v1 import execution_service_pb2 as pb

from execution_service.durable.remote_tree import RemoteTree
from execution_service.durable.stream import RemoteRun
from execution_service.engine.events import EncodedEvent, RunEvent
from execution_service.errors import ExecutionDatabaseUnavailable

STARTED = pb.WatchRunResponse(run_started=pb.RunStarted(run_id="r1", user="alice")).SerializeToString()


class _BrokenStream(RemoteRun):
    """A run whose stream gives its RunStarted, then fails (the execution database went away)."""

    async def follow(
        self, from_sequence: int = 0, last_received: Mapping[str, int] | None = None
    ) -> AsyncGenerator[RunEvent]:
        yield EncodedEvent(STARTED)
        raise ExecutionDatabaseUnavailable("the execution database did not answer")


async def _watch(tree: RemoteTree, from_sequence: int) -> list[RunEvent]:
    return [event async for event in tree.follow(from_sequence)]


@pytest.mark.parametrize("from_sequence", [0, 3])
async def test_a_stream_that_cannot_be_read_ends_the_watch_with_its_error(from_sequence: int) -> None:
    tree = RemoteTree(_BrokenStream(run_id="r1", user="alice", started=STARTED))
    with pytest.raises(ExecutionDatabaseUnavailable, match="did not answer"):
        await asyncio.wait_for(_watch(tree, from_sequence), timeout=5.0)


async def test_a_watcher_gets_the_events_read_before_the_error() -> None:
    tree = RemoteTree(_BrokenStream(run_id="r1", user="alice", started=STARTED))
    events = tree.follow()
    first = await asyncio.wait_for(anext(events), timeout=5.0)
    assert isinstance(first, EncodedEvent) and first.data == STARTED
    with pytest.raises(ExecutionDatabaseUnavailable):
        await asyncio.wait_for(anext(events), timeout=5.0)
