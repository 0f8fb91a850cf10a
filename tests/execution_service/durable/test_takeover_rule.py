"""When a replica takes over another's runs: a silent replica is dead only if the database could be reached all along.
After an outage of the execution database every heartbeat is stale; the first replica to beat again must not take
over the runs the others still execute."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from execution_service.durable import replicas
from execution_service.durable.replicas import ReplicaHeartbeat
from execution_service.durable.runtime import libpq_url
from execution_service.durable.schema import ensure_schema

pytestmark = pytest.mark.postgres

TIMEOUT_S = 0.6


@pytest.fixture
async def url(database_url: str) -> str:
    libpq = libpq_url(database_url)
    await ensure_schema(libpq)
    return libpq


@pytest.fixture
def recovered(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The replicas whose runs were taken over (DBOS's recovery itself is not what is tried here)."""
    taken: list[str] = []

    def recover(replica_id: str) -> list[str]:
        taken.append(replica_id)
        return []

    monkeypatch.setattr(replicas, "recover_runs_of", recover)
    return taken


async def silence(url: str, replica_id: str) -> None:
    """`replica_id` last heartbeat an hour ago (dead, or cut off from the database with everyone else)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE agentrun.replicas SET heartbeat_at = now() - interval '1 hour' WHERE replica_id = %s", (replica_id,)
        )


async def beat_for_longer_than_the_timeout(*replicas: ReplicaHeartbeat) -> None:
    """Each replica beats (and looks for silent ones) every third of the timeout, four times."""
    for _ in range(4):
        for replica in replicas:
            await replica._beat_and_take_over()
        await asyncio.sleep(TIMEOUT_S / 3)


async def test_a_replica_takes_over_a_silent_one_after_beating_for_the_timeout_itself(
    url: str, recovered: list[str]
) -> None:
    dead = ReplicaHeartbeat(url, "dead", interval_s=0.1, takeover_timeout_s=TIMEOUT_S)
    await dead.beat()
    await silence(url, "dead")
    survivor = ReplicaHeartbeat(url, "survivor", interval_s=0.1, takeover_timeout_s=TIMEOUT_S)
    await survivor._beat_and_take_over()
    assert recovered == []  # just started: it has not seen the database reachable for a timeout yet
    for _ in range(4):  # beating every third of the timeout, for longer than the timeout
        await asyncio.sleep(TIMEOUT_S / 3)
        await survivor._beat_and_take_over()
    assert recovered == ["dead"]


async def test_after_an_outage_of_the_database_no_replica_takes_over_the_others(url: str, recovered: list[str]) -> None:
    one = ReplicaHeartbeat(url, "one", interval_s=0.1, takeover_timeout_s=TIMEOUT_S)
    other = ReplicaHeartbeat(url, "other", interval_s=0.1, takeover_timeout_s=TIMEOUT_S)
    await beat_for_longer_than_the_timeout(one, other)
    assert recovered == []  # both alive, each beating for longer than the timeout

    # The database goes away for longer than the timeout: no replica can beat (`one` tries, and fails).
    async def unreachable() -> None:
        raise psycopg.OperationalError("connection refused")

    one.beat = unreachable  # type: ignore[method-assign]
    with pytest.raises(psycopg.OperationalError):
        await one._beat_and_take_over()
    del one.beat
    await silence(url, "other")
    await silence(url, "one")

    # Back: `one` beats first and finds `other` silent for an hour, but it could not reach the database either.
    await one._beat_and_take_over()
    assert recovered == []
    for _ in range(4):  # `other` beats again, every third of the timeout: alive, never taken over
        await other._beat_and_take_over()
        await asyncio.sleep(TIMEOUT_S / 3)
        await one._beat_and_take_over()
    assert recovered == []


async def test_a_replica_that_handed_its_runs_over_is_taken_over_at_once(url: str, recovered: list[str]) -> None:
    """A replica stopping (SIGTERM) marks itself gone: a survivor that just started takes its runs on its first beat."""
    leaving = ReplicaHeartbeat(url, "leaving", interval_s=0.1, takeover_timeout_s=30)
    await leaving.beat()
    await leaving.stop()
    survivor = ReplicaHeartbeat(url, "new-survivor", interval_s=0.1, takeover_timeout_s=30)
    await survivor._beat_and_take_over()
    assert recovered == ["leaving"]


async def test_a_database_that_hung_rather_than_refused_starts_the_window_again(url: str, recovered: list[str]) -> None:
    """Beats that all succeed, but with a gap longer than half the timeout between two (the database stopped
    answering, then answered): the others may not have been able to beat either."""
    one = ReplicaHeartbeat(url, "hung-one", interval_s=0.1, takeover_timeout_s=TIMEOUT_S)
    other = ReplicaHeartbeat(url, "hung-other", interval_s=0.1, takeover_timeout_s=TIMEOUT_S)
    await beat_for_longer_than_the_timeout(one, other)
    await asyncio.sleep(TIMEOUT_S)  # nobody beats: a hang, as seen by `one`'s next beat
    await silence(url, "hung-other")
    await one._beat_and_take_over()
    assert recovered == []
