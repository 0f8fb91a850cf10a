"""What one durable operation costs, DBOS against the journal (the evidence behind execution_service.durable.journal).

    .venv/bin/python bench/durable_ops.py            # 200 operations of each kind
    .venv/bin/python bench/durable_ops.py --ops 50

On a throwaway PostgreSQL database (tests.support.postgres), in this process, one at a time: process CPU and wall
time per operation of
- `DBOS.write_stream_async` inside a workflow (a 300-byte entry), `DBOS.run_step_async` of a step that does nothing,
  and a workflow that does nothing (its start and end: what a run still costs in DBOS);
- the journal (execution_service.durable.journal.Journal): `append` (one prepared INSERT ... ON CONFLICT DO NOTHING
  with its pg_notify), and `checkpoint` of a pickled 300-byte value.
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dbos import DBOS

from bench._util import header
from execution_service.durable.journal import Journal
from execution_service.durable.runtime import sqlalchemy_url
from execution_service.durable.schema import ensure_schema
from tests.support.postgres import find_postgres

ENTRY = b"x" * 300


@DBOS.workflow(name="bench.writes")
async def _writes(count: int) -> None:
    for _ in range(count):
        await DBOS.write_stream_async("events", ENTRY)


async def _nothing() -> int:
    return 1


@DBOS.workflow(name="bench.steps")
async def _steps(count: int) -> None:
    for _ in range(count):
        await DBOS.run_step_async({"name": "nothing"}, _nothing)


@DBOS.workflow(name="bench.empty")
async def _empty(count: int) -> None:
    return None


async def _measure(label: str, count: int, work: Callable[[], Awaitable[None]]) -> None:
    cpu, wall = time.process_time(), time.perf_counter()
    await work()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"  {label:<44} {cpu / count * 1e3:6.3f} ms CPU, {wall / count * 1e3:6.3f} ms wall per operation", flush=True)


async def _dbos(url: str, count: int) -> None:
    DBOS(config={"name": "bench-durable-ops", "system_database_url": sqlalchemy_url(url), "executor_id": "bench"})
    DBOS.launch()
    try:
        for workflow in (_writes, _steps):
            await (await DBOS.start_workflow_async(workflow, 5)).get_result()  # warm-up

        async def writes() -> None:
            await (await DBOS.start_workflow_async(_writes, count)).get_result()

        async def steps() -> None:
            await (await DBOS.start_workflow_async(_steps, count)).get_result()

        async def workflows() -> None:
            for _ in range(count // 4):
                await (await DBOS.start_workflow_async(_empty, 0)).get_result()

        await _measure("DBOS write_stream_async (in a workflow)", count, writes)
        await _measure("DBOS run_step_async (a step doing nothing)", count, steps)
        await _measure("DBOS workflow doing nothing (start and end)", count // 4, workflows)
    finally:
        DBOS.destroy(destroy_registry=False)


async def _journal(url: str, count: int) -> None:
    await ensure_schema(url)
    journal = Journal(url)
    await journal.open()
    value = pickle.dumps(ENTRY)
    try:
        for offset in range(10):  # warm-up: connections, prepared statements
            await journal.append("warm-up", offset, ENTRY)
            await journal.checkpoint("warm-up", offset, "nothing", value)

        async def appends() -> None:
            for offset in range(count):
                await journal.append("bench", offset, ENTRY)

        async def replayed() -> None:
            for offset in range(count):
                await journal.append("bench", offset, ENTRY)

        async def checkpoints() -> None:
            for operation in range(count):
                await journal.checkpoint("bench", operation, "nothing", value)

        await _measure("journal append (INSERT + pg_notify)", count, appends)
        await _measure("journal append of an entry already there", count, replayed)
        await _measure("journal checkpoint (pickled value)", count, checkpoints)
    finally:
        await journal.close()


async def amain(count: int) -> None:
    header(f"Durable operations, one at a time ({count} of each)")
    server, description = find_postgres()
    if server is None:
        print(f"  skipped: no PostgreSQL ({description})")
        return
    url = server.create_database(prefix="agentrun_bench_ops")
    try:
        await _dbos(url, count)
        await _journal(url, count)
    finally:
        server.drop_database(url)
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=200)
    asyncio.run(amain(parser.parse_args().ops))


if __name__ == "__main__":
    main()
