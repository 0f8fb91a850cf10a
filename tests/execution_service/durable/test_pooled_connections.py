"""Work on a pooled connection whose caller is cancelled gives the connection back (durable.pooled_connections): on a
real PostgreSQL, with psycopg_pool, which loses a connection whose holder is cancelled while it puts it back."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from execution_service.durable.pooled_connections import PooledConnections

pytestmark = [pytest.mark.postgres]


async def select_one(conn: psycopg.AsyncConnection[Any]) -> int:
    cursor = await conn.execute("SELECT 1")
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_caller_cancelled_while_its_connection_goes_back_does_not_cost_the_pool_it(database_url: str) -> None:
    pool: AsyncConnectionPool = AsyncConnectionPool(database_url, min_size=1, max_size=1, open=False)
    connections = PooledConnections(pool)
    await connections.open()
    try:
        working, finish = asyncio.Event(), asyncio.Event()

        async def work_until_told(conn: psycopg.AsyncConnection[Any]) -> None:
            working.set()
            await finish.wait()

        caller = asyncio.create_task(connections.run(work_until_told, timeout_s=5))
        await working.wait()
        # The moment psycopg_pool loses a connection: its holder puts it back while the pool's lock is busy (another
        # client taking a connection holds it), and is cancelled as it waits for the lock.
        async with pool._lock:
            finish.set()
            await asyncio.sleep(0.05)
            caller.cancel()
            await asyncio.sleep(0.05)
        with pytest.raises(asyncio.CancelledError):
            await caller

        assert await asyncio.wait_for(connections.run(select_one, timeout_s=2), 5) == 1
    finally:
        await connections.close()
