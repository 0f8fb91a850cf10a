"""Sessions and run trees on PostgreSQL: ListSessions, GetRun include_descendants, the session/root filters, stats
by session, and what the sessions triggers cost RecordRun.

    .venv/bin/python bench/composition.py            # 300,000 runs in ~28,000 sessions, ~3 min
    .venv/bin/python bench/composition.py --quick    # 30,000 runs, < 60 s

Seeding: sessions of 1-15 top-level runs (a few minutes apart) spread over 30 days and 100 users, a quarter of the
top-level runs with 1-3 sub-agent runs (some with a child of their own), and a fifth of the top-level runs outside
any session; written with COPY with the sessions triggers on (the load time is printed), then ANALYZE. Runs are
BASIC rows (no steps): these queries never read steps.

Ingest A/B: RecordRun of tests.support.run_factory.make_run() runs (40 steps) with a session id against the same
runs without one, interleaved A, B, A, B, 8 in flight: the ratio is what the triggers cost a write.

Queries are timed through gRPC (RunsService in a subprocess, authentication off: the caller sees every run), except
"ListSessions as one user", timed in-process through the repository with that user's scope (what a user's call does
after authentication). Benchmarks print figures; they are not tests.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import grpc
import psycopg
from agentrun.runs.v1 import runs_service_pb2 as rs
from agentrun.runs.v1 import runs_service_pb2_grpc as rs_grpc
from psycopg import sql

from agentrun_core.proto_convert import run_to_pb
from bench._util import header, median, summary_ms
from bench.runs_store import RunsServiceProcess, _esc, _ts, _uuid7
from runs_service.queries import ListSessionsQuery, Scope
from runs_service.storage.engine import create_engine_for
from runs_service.storage.migrate import upgrade
from runs_service.storage.repository import RunRepository
from runs_service.storage.rows import run_to_rows
from runs_service.storage.tables import runs
from tests.support.run_factory import make_run

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
BENCH_DB = "agentrun_bench_composition"
USERS = [f"user-{i:03d}" for i in range(100)]
AGENTS = ["planner", "support", "triage", "clock", "reviewer"]
SUB_AGENTS = ["researcher", "searcher", "writer"]
_RUN_COLUMNS = [c.name for c in runs.columns]


@dataclass(frozen=True)
class Config:
    quick: bool
    admin_url: str
    runs: int
    ingest_runs: int
    samples: int
    keep_db: bool


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pg", default=os.environ.get("AGENTRUN_BENCH_PG", DEFAULT_ADMIN_URL), help="admin URL")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args(argv)
    return Config(
        quick=args.quick,
        admin_url=args.pg,
        runs=args.runs or (30_000 if args.quick else 300_000),
        ingest_runs=100 if args.quick else 400,
        samples=100 if args.quick else 500,
        keep_db=args.keep_db,
    )


def _db_url(admin_url: str) -> str:
    return f"{admin_url.rpartition('/')[0]}/{BENCH_DB}"


def recreate_database(admin_url: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(BENCH_DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DB)))
    url = _db_url(admin_url)
    upgrade(url, "head")
    return url


def drop_database(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(BENCH_DB)))


# --- seeding -----------------------------------------------------------------------------------------------------


@dataclass
class Seeded:
    roots: list[str] = dataclasses.field(default_factory=list)  # top-level runs with sub-agent runs
    sessions: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (session id, user)
    window_start: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    window_end: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    count: int = 0


def _templates() -> list[dict[str, Any]]:
    rows = []
    for seed in range(40):
        run = make_run(model_calls=2 + seed % 5, tool_calls=seed % 5, seed=seed)
        rows.append(run_to_rows(run).run)
    return rows


def seed(db_url: str, target: int) -> Seeded:
    header(f"Seeding about {target:,} runs in sessions and trees (COPY, sessions triggers on)")
    rng = random.Random(5)
    templates = _templates()
    now = datetime.now(UTC).replace(microsecond=0)
    seeded = Seeded(window_start=now - timedelta(days=30), window_end=now + timedelta(days=1))
    counter = 0

    def row(start: datetime, user: str, agent: str, session: str, parent: str = "", root: str = "",
            call: str = "", depth: int = 0) -> tuple[str, str]:  # fmt: skip
        nonlocal counter
        counter += 1
        run_id = _uuid7(int(start.timestamp() * 1000), counter)
        base = dict(templates[counter % len(templates)])
        duration = timedelta(seconds=1 + rng.random() * 20)
        base.update(
            id=run_id,
            agent_name=agent,
            user_name=user,
            start_time=start,
            end_time=start + duration,
            duration_us=duration // timedelta(microseconds=1),
            session_id=session,
            parent_run_id=parent,
            root_run_id=root,
            parent_tool_call_id=call,
            depth=depth,
            cost=Decimal(base["cost"]) if base["cost"] is not None else None,
            recorded_at=start + duration,
            updated_at=start + duration,
        )
        return run_id, "\t".join(_esc(base[name]) for name in _RUN_COLUMNS) + "\n"

    def lines() -> Iterator[str]:
        session_number = 0
        while counter < target:
            user = rng.choice(USERS)
            start = seeded.window_start + timedelta(seconds=rng.random() * 29 * 86400)
            in_session = rng.random() < 0.8
            session = ""
            if in_session:
                session_number += 1
                session = f"s-{session_number:07d}"
                seeded.sessions.append((session, user))
            for _turn in range(rng.randint(1, 15) if in_session else 1):
                start += timedelta(seconds=30 + rng.random() * 600)
                agent = rng.choice(AGENTS)
                root_id, line = row(start, user, agent, session)
                yield line
                if rng.random() < 0.25:
                    seeded.roots.append(root_id)
                    for c in range(rng.randint(1, 3)):
                        child_start = start + timedelta(seconds=0.5 + c)
                        child_id, line = row(
                            child_start, user, rng.choice(SUB_AGENTS), session, root_id, root_id, f"call-{c}", 1
                        )
                        yield line
                        if rng.random() < 0.3:
                            _, line = row(
                                child_start + timedelta(seconds=0.2), user, "searcher", session, child_id, root_id,
                                "call-0", 2,
                            )  # fmt: skip
                            yield line

    started = time.perf_counter()
    with psycopg.connect(db_url) as conn:
        statement = f"COPY runs ({', '.join(_RUN_COLUMNS)}) FROM STDIN"
        with conn.cursor() as cursor, cursor.copy(statement) as copy:
            buffer: list[str] = []
            for line in lines():
                buffer.append(line)
                if len(buffer) >= 20_000:
                    copy.write("".join(buffer).encode())
                    buffer.clear()
            if buffer:
                copy.write("".join(buffer).encode())
        conn.commit()
        loaded = time.perf_counter() - started
        conn.execute("ANALYZE runs")
        conn.execute("ANALYZE sessions")
        conn.commit()
        stored = conn.execute("SELECT count(*) FROM sessions").fetchone()
    seeded.count = counter
    print(
        f"{counter:,} runs, {len(seeded.sessions):,} sessions ({stored[0] if stored else '?':,} session rows made by "
        f"the triggers), {len(seeded.roots):,} trees; COPY {loaded:.1f} s ({counter / loaded:,.0f} runs/s)",
        flush=True,
    )
    return seeded


# --- measurements --------------------------------------------------------------------------------------------------


async def _timed(call: Callable[[], Awaitable[Any]], samples: int) -> list[float]:
    for _ in range(min(20, samples)):
        await call()  # warm-up
    durations = []
    for _ in range(samples):
        t0 = time.perf_counter()
        await call()
        durations.append(time.perf_counter() - t0)
    return durations


async def bench_ingest(cfg: Config, stub: rs_grpc.RunsServiceStub) -> None:
    header("RecordRun with a session id (triggers fire) vs without, 8 in flight, interleaved A B A B")

    def batch(salt: int, with_session: bool) -> list[rs.RecordRunRequest]:
        made = [make_run(seed=salt * 100_000 + i) for i in range(cfg.ingest_runs)]
        if with_session:
            made = [dataclasses.replace(r, session_id=f"ingest-{salt}-{i % 25}") for i, r in enumerate(made)]
        return [rs.RecordRunRequest(run=run_to_pb(r)) for r in made]

    async def rate(requests: list[rs.RecordRunRequest]) -> float:
        queue = list(requests)

        async def worker() -> None:
            while queue:
                await stub.RecordRun(queue.pop())

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(8)))
        return len(requests) / (time.perf_counter() - t0)

    rates: dict[bool, list[float]] = {True: [], False: []}
    for rep in range(4):
        for with_session in (True, False) if rep % 2 == 0 else (False, True):
            rates[with_session].append(await rate(batch(rep * 2 + int(with_session), with_session)))
    a, b = sum(rates[True]), sum(rates[False])
    print(
        f"with session {a / 4:,.0f} runs/s, without {b / 4:,.0f} runs/s: ratio {a / b:.3f} "
        f"(per round: {', '.join(f'{x / y:.2f}' for x, y in zip(rates[True], rates[False], strict=True))})",
        flush=True,
    )


async def bench_queries(cfg: Config, seeded: Seeded, target: str, db_url: str) -> None:
    header(f"Queries at {seeded.count:,} runs through gRPC (one call in flight)")
    rng = random.Random(9)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = rs_grpc.RunsServiceStub(channel)
        await bench_ingest(cfg, stub)
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("ANALYZE runs")  # the ingested runs, as autovacuum would (steady-state plans)
            conn.execute("ANALYZE sessions")
        header("Reads")

        async def report(label: str, call: Callable[[], Awaitable[Any]]) -> list[float]:
            durations = await _timed(call, cfg.samples)
            print(f"{label:<46} {summary_ms(durations)}", flush=True)
            return durations

        async def get_basic() -> None:
            await stub.GetRun(rs.GetRunRequest(run_id=rng.choice(seeded.roots)))

        async def get_tree() -> None:
            reply = await stub.GetRun(rs.GetRunRequest(run_id=rng.choice(seeded.roots), include_descendants=True))
            assert reply.descendants

        basic = await report("GetRun BASIC of a root (baseline)", get_basic)
        tree = await report("GetRun BASIC + include_descendants", get_tree)
        print(f"  include_descendants / baseline, p50: {median(tree) / median(basic):.2f}", flush=True)

        async def runs_of_session() -> None:
            session, _user = rng.choice(seeded.sessions)
            reply = await stub.ListRuns(rs.ListRunsRequest(filter=f'session_id = "{session}"', page_size=50))
            assert reply.runs

        async def runs_of_root() -> None:
            root = rng.choice(seeded.roots)
            reply = await stub.ListRuns(rs.ListRunsRequest(filter=f'root_run_id = "{root}"', page_size=50))
            assert reply.runs

        async def top_level_page() -> None:
            reply = await stub.ListRuns(rs.ListRunsRequest(filter='parent_run_id = ""', page_size=50))
            assert len(reply.runs) == 50

        await report('ListRuns session_id = "S", page of 50', runs_of_session)
        await report('ListRuns root_run_id = "R", page of 50', runs_of_root)
        await report('ListRuns parent_run_id = "", page of 50', top_level_page)

        tokens: list[str] = []
        token = ""
        for _ in range(20):
            page = await stub.ListSessions(rs.ListSessionsRequest(page_size=50, page_token=token))
            token = page.next_page_token
            tokens.append(token)

        async def sessions_first() -> None:
            reply = await stub.ListSessions(rs.ListSessionsRequest(page_size=50))
            assert len(reply.sessions) == 50

        async def sessions_deep() -> None:
            reply = await stub.ListSessions(rs.ListSessionsRequest(page_size=50, page_token=rng.choice(tokens)))
            assert len(reply.sessions) == 50

        async def sessions_agent() -> None:
            flt = f'agent_name = "{rng.choice(SUB_AGENTS)}"'
            reply = await stub.ListSessions(rs.ListSessionsRequest(filter=flt, page_size=50))
            assert len(reply.sessions) == 50

        await report("ListSessions, page of 50 (first)", sessions_first)
        await report("ListSessions, pages 2-21 by page token", sessions_deep)
        await report('ListSessions agent_name = "<sub-agent>", 50', sessions_agent)

        request = rs.GetRunStatsRequest(
            start_time=_ts(seeded.window_start), end_time=_ts(seeded.window_end), group_by=rs.STATS_GROUP_BY_SESSION
        )
        durations = []
        for _ in range(2 if cfg.quick else 4):
            t0 = time.perf_counter()
            groups = (await stub.GetRunStats(request, timeout=300)).groups
            durations.append(time.perf_counter() - t0)
        print(
            f"{'GetRunStats 30 days by session':<46} median {median(durations) * 1e3:7.1f} ms ({len(groups):,} groups)",
            flush=True,
        )

    engine = create_engine_for(db_url)
    repository = RunRepository(engine, b"bench-secret-0123456789abcdef")
    try:

        async def as_user() -> None:
            page = await repository.list_sessions(ListSessionsQuery(page_size=50), Scope(user=rng.choice(USERS)))
            assert page.sessions

        durations = await _timed(as_user, cfg.samples)
        print(f"{'ListSessions as one user (repository), 50':<46} {summary_ms(durations)}", flush=True)
    finally:
        await engine.dispose()


async def amain(cfg: Config) -> None:
    t0 = time.perf_counter()
    db_url = await asyncio.to_thread(recreate_database, cfg.admin_url)
    seeded = await asyncio.to_thread(seed, db_url, cfg.runs)
    with tempfile.TemporaryDirectory(prefix="agentrun-bench-") as tmp:
        server = RunsServiceProcess(db_url, Path(tmp))
        try:
            await server.wait_ready()
            await bench_queries(cfg, seeded, server.target, db_url)
        finally:
            server.stop()
            if not cfg.keep_db:
                await asyncio.to_thread(drop_database, cfg.admin_url)
    print(f"\ndone in {time.perf_counter() - t0:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> None:
    asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    main()
