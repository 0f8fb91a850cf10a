"""The journal's batched writers (no database: the statements are answered by the test): a write that comes as both
writers finish still gets written."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from execution_service.durable.journal import Journal


class _GatedDatabase:
    """Answers each batch of writes when the test opens its gate."""

    def __init__(self) -> None:
        self.gates: list[asyncio.Event] = []
        self.written: list[dict[str, Any]] = []

    async def on_connection(self, work: Any) -> list[Sequence[tuple[Any, ...]]]:
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        batch = work.keywords["batch"]
        self.written.extend(write.params for write in batch)
        return [[(1,)] for _ in batch]


async def test_a_write_that_comes_as_both_writers_finish_is_still_written() -> None:
    journal = Journal("postgresql://unused")
    database = _GatedDatabase()
    journal._on_connection = database.on_connection  # type: ignore[method-assign,assignment]  # answered here
    first = [asyncio.create_task(journal.append("r", offset, b"x")) for offset in range(2)]
    for _ in range(3):
        await asyncio.sleep(0)
    more = [asyncio.create_task(journal.append("r", offset, b"x")) for offset in range(2, 4)]
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(database.gates) == 2  # both writers wait on the database
    release = asyncio.Event()

    async def late() -> None:
        await release.wait()
        await journal.append("r", 99, b"late")

    last = asyncio.create_task(late())
    await asyncio.sleep(0)
    for gate in database.gates:
        gate.set()
    release.set()
    await asyncio.wait_for(asyncio.gather(*first, *more), 5)
    for _ in range(100):  # the late write's batch waits for its own gate
        if len(database.gates) == 3:
            break
        await asyncio.sleep(0.01)
    assert len(database.gates) == 3, "the late write found no writer"
    database.gates[2].set()
    await asyncio.wait_for(last, 5)
    assert sorted(w["offset"] for w in database.written) == [0, 1, 2, 3, 99]
