"""The durable runs' journal on a real PostgreSQL: entries written once whatever a replay writes again, followers on
another process woken by NOTIFY, call results checkpointed once and replayed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import psycopg
import pytest

from execution_service.durable import journal
from execution_service.durable.checkpoints import Checkpoints
from execution_service.durable.journal import Journal
from execution_service.durable.recorder import ReplayDiverged
from execution_service.durable.schema import ensure_schema

pytestmark = [pytest.mark.postgres]

# Appends entries 1..3 of run "r-remote" from another process, a second apart, on the same database.
WRITER = """
import asyncio, sys
from execution_service.durable.journal import Journal

async def main(url):
    j = Journal(url)
    await j.open()
    for offset in (1, 2, 3):
        await asyncio.sleep(0.5)
        await j.append("r-remote", offset, f"entry {offset}".encode())
    await j.close()

asyncio.run(main(sys.argv[1]))
"""


@pytest.fixture
async def run_journal(database_url: str) -> AsyncIterator[Journal]:
    await ensure_schema(database_url)
    opened = Journal(database_url)
    await opened.open()
    journal.bind(opened)
    try:
        yield opened
    finally:
        journal.bind(None)
        await opened.close()


async def test_an_entry_written_again_by_a_replay_stays_as_first_written(run_journal: Journal) -> None:
    await run_journal.append("r1", 0, b"started")
    await run_journal.append("r1", 1, b"step 1")
    await run_journal.append("r1", 1, b"step 1, replayed differently")
    await run_journal.append("r1", 2, b"finished")

    assert await run_journal.entries("r1") == [(0, b"started"), (1, b"step 1"), (2, b"finished")]
    assert await run_journal.entries("r1", 2) == [(2, b"finished")]
    assert await run_journal.last("r1") == (2, b"finished")
    assert await run_journal.entries("r2") == []


async def test_a_follower_is_woken_by_the_writer_on_another_process_without_polling(
    run_journal: Journal, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "FOLLOW_POLL_S", 60.0)  # only a notification can wake it in time
    await run_journal.append("r-remote", 0, b"entry 0")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, database_url])
    received: list[tuple[int, bytes, float]] = []
    t0 = time.monotonic()
    try:
        async with asyncio.timeout(30):
            async for offset, value in run_journal.follow("r-remote", 0):
                received.append((offset, value, time.monotonic() - t0))
                if offset == 3:
                    break
    finally:
        assert writer.wait(timeout=30) == 0

    assert [(offset, value) for offset, value, _ in received] == [(i, f"entry {i}".encode()) for i in range(4)]
    assert received[-1][2] < 20.0  # three writes 0.5 s apart, plus the other process's start: not a 60 s poll


async def test_a_wait_for_an_entry_ends_when_woken_and_its_condition_holds(
    run_journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The starter of a run waits for its first entry until this replica executes the run (then it follows the run in
    # memory): the wake ends the wait at once, with no entry written.
    monkeypatch.setattr(journal, "FOLLOW_POLL_S", 60.0)
    taken = False

    async def take_it_here() -> None:
        nonlocal taken
        await asyncio.sleep(0.3)
        run_journal.wake("not-taken")  # another run's wake: nothing to do with this one
        taken = True
        run_journal.wake("taken-here")

    waker = asyncio.create_task(take_it_here())
    began = time.monotonic()
    assert await run_journal.entry("taken-here", 0, 30, unless=lambda: taken) is None
    assert time.monotonic() - began < 10
    await waker
    # Without the condition, a wake alone ends nothing: the entry is waited for until it comes.
    assert await run_journal.entry("taken-here", 0, 0.2, unless=lambda: False) is None


async def test_reading_one_entry_waits_for_it_and_gives_up_after_its_wait(run_journal: Journal) -> None:
    assert await run_journal.entry("late", 0, 0.2) is None

    async def write_soon() -> None:
        await asyncio.sleep(0.2)
        await run_journal.append("late", 0, b"started")

    writing = asyncio.create_task(write_soon())
    assert await run_journal.entry("late", 0, 10.0) == b"started"
    await writing
    assert await run_journal.entry("late", 0, 0) == b"started"


async def test_a_checkpointed_call_is_made_once_and_replayed_from_the_journal(run_journal: Journal) -> None:
    calls: list[str] = []

    async def call(answer: str) -> dict[str, str]:
        calls.append(answer)
        return {"answer": answer}

    first = Checkpoints("r-calls")
    model, tool = first.reserve(), first.reserve()
    assert await model.run_async({"name": "model"}, call, "a") == {"answer": "a"}
    assert await tool.run_async({"name": "tool"}, call, "b") == {"answer": "b"}

    resumed = await Checkpoints.resume("r-calls")
    again_model, again_tool, new = resumed.reserve(), resumed.reserve(), resumed.reserve()
    assert await again_model.run_async({"name": "model"}, call, "other") == {"answer": "a"}
    assert await again_tool.run_async({"name": "tool"}, call, "other") == {"answer": "b"}
    assert await new.run_async({"name": "tool"}, call, "c") == {"answer": "c"}
    assert calls == ["a", "b", "c"]


async def test_the_result_recorded_first_wins_over_a_second_execution(run_journal: Journal) -> None:
    async def answer(value: int) -> int:
        return value

    assert await Checkpoints("r-twice").reserve().run_async({"name": "model"}, answer, 1) == 1
    # A second execution that did not read the first one's results (a race DBOS's recovery does not let happen).
    assert await Checkpoints("r-twice").reserve().run_async({"name": "model"}, answer, 2) == 1


async def test_a_replay_that_meets_another_operation_than_recorded_diverges(run_journal: Journal) -> None:
    async def answer() -> str:
        return "done"

    await Checkpoints("r-diverge").reserve().run_async({"name": "agentrun.model_call"}, answer)
    resumed = await Checkpoints.resume("r-diverge")
    with pytest.raises(ReplayDiverged, match=r"agentrun\.tool_call now but was agentrun\.model_call"):
        await resumed.reserve().run_async({"name": "agentrun.tool_call"}, answer)


async def test_writes_that_come_together_are_all_written_once_in_batches(run_journal: Journal) -> None:
    """500 runs writing at once (batched into a few transactions), and five executions of one operation checkpointing
    different results at once: every entry lands once, and every execution gets the result recorded first."""
    await asyncio.gather(
        *(run_journal.append(f"r-many-{i}", offset, b"e%d" % offset) for i in range(100) for offset in range(5))
    )
    outcomes = await asyncio.gather(*(run_journal.checkpoint("r-race", 0, "model", b"v%d" % i) for i in range(5)))

    for i in range(100):
        assert await run_journal.entries(f"r-many-{i}") == [(offset, b"e%d" % offset) for offset in range(5)]
    recorded = await run_journal.checkpoints("r-race")
    assert list(recorded) == [0]
    assert outcomes.count(None) == 1
    assert {outcome for outcome in outcomes if outcome is not None} == {recorded[0]}


async def test_broken_connections_are_replaced_and_followers_still_get_every_entry(
    run_journal: Journal, database_url: str
) -> None:
    await run_journal.append("r-broken", 0, b"entry 0")
    following = run_journal.follow("r-broken", 0)
    assert await anext(following) == (0, b"entry 0")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
        cursor = await admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s "
            "AND datname = current_database()",
            (journal.APPLICATION,),
        )
        assert (await cursor.fetchone()) == (2,)  # the pool's one connection and the listener's

    await run_journal.append("r-broken", 1, b"entry 1")

    async with asyncio.timeout(10):
        assert await anext(following) == (1, b"entry 1")
    await following.aclose()
    assert await run_journal.entries("r-broken") == [(0, b"entry 0"), (1, b"entry 1")]


async def _listening_connections(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
        cursor = await admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND datname = current_database() "
            "AND query LIKE 'LISTEN%%'",
            (journal.APPLICATION,),
        )
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def test_a_replica_listens_only_while_it_follows_runs(
    run_journal: Journal, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "LISTEN_IDLE_S", 0.2)
    monkeypatch.setattr(journal, "FOLLOW_POLL_S", 60.0)  # only a notification can wake a follower in time
    await run_journal.append("r-idle", 0, b"entry 0")
    assert await _listening_connections(database_url) == 0  # writing alone does not listen

    following = asyncio.create_task(run_journal.entry("r-idle", 1, 1.5))  # a follower comes, and leaves
    await asyncio.sleep(0.5)
    assert await _listening_connections(database_url) == 1
    assert await following is None
    listening = 1
    for _ in range(100):  # the listener stops LISTEN_IDLE_S after the follower left
        await asyncio.sleep(0.1)
        listening = await _listening_connections(database_url)
        if listening == 0:
            break
    assert listening == 0

    async def write_soon() -> None:
        await asyncio.sleep(0.5)
        await run_journal.append("r-idle", 1, b"entry 1")

    writing = asyncio.create_task(write_soon())
    assert await run_journal.entry("r-idle", 1, 10.0) == b"entry 1"  # listening again, woken by the notification
    await writing
