"""RunsService benchmark on PostgreSQL: ingest through gRPC next to raw psycopg, then queries at scale.

    .venv/bin/python bench/runs_store.py            # full: 1,000,000 runs (100,000 with steps), ~5-8 min
    .venv/bin/python bench/runs_store.py --quick    # smoke: 50,000 runs (10,000 with steps), < 60 s

Ingest: RecordRun of tests.support.run_factory.make_run() runs (40 steps, 15 tool calls) through a real RunsService
(a subprocess on 127.0.0.1, so client and server CPU are separate processes) with N calls in flight, next to raw
psycopg writing the same rows (run row + 40 step rows + 15 tool call rows per transaction, one pipeline per run,
N connections). The two are interleaved A, B, A, B to cancel machine noise; the ratio is of the summed rates.

Scale: the tables are seeded with COPY (FREEZE, in the TRUNCATE's transaction: rows are all-visible at once, as
after a VACUUM) from a few hundred make_run() templates rewritten with fresh ids and start times spread over the
last 30 days, then indexes are built and the tables ANALYZEd. Then GetRun (FULL/BASIC), ListRuns (agent + status,
page of 50; an id prefix and an id suffix, as the CLI resolves a short id), GetRunStats (30 days, by agent and by
model) and GetToolStats (30 days) are timed through gRPC.

Benchmarks print figures; they are not tests. PostgreSQL: AGENTRUN_BENCH_PG or postgresql://postgres@127.0.0.1:5432/
(a database `agentrun_bench` is created, and dropped at the end unless --keep-db).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# Before grpc is imported, as the services' packages do (agentrun_core.grpc_process: uvloop and gRPC fork handlers).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import grpc
import psycopg
from agentrun.runs.v1 import runs_service_pb2 as rs
from agentrun.runs.v1 import runs_service_pb2_grpc as rs_grpc
from google.protobuf.timestamp_pb2 import Timestamp
from psycopg import sql
from psycopg.types.json import Jsonb
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateIndex

from agentrun_core.domain import RunStatus
from agentrun_core.proto_convert import run_to_pb
from bench._util import (
    free_port,
    header,
    median,
    percentile,
    process_cpu_s,
    processes_cpu_s,
    summary_ms,
    verdict,
)
from runs_service.storage.engine import orjson_text
from runs_service.storage.migrate import upgrade
from runs_service.storage.rows import RunRows, run_to_rows
from runs_service.storage.tables import run_steps, runs, tool_calls
from tests.support.run_factory import make_run

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
BENCH_DB = "agentrun_bench"
AGENTS = [f"agent-{i:02d}" for i in range(20)]
MODELS = ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-lite", "gemini-2.0-flash"]
USERS = [f"user-{i:03d}" for i in range(100)]
# Status mix of the seeded runs (per 20 templates).
STATUS_MIX = [RunStatus.COMPLETED] * 16 + [RunStatus.FAILED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMED_OUT]
TEMPLATES = 400
GOALS = {"ingest_ratio": 0.7, "server_cpu_ms": 1.0, "get_run_p99_ms": 5.0, "list_runs_p99_ms": 20.0, "stats_ms": 500.0}


@dataclass(frozen=True)
class Config:
    quick: bool
    admin_url: str
    runs: int
    step_runs: int
    ingest_runs: int
    concurrency: int
    batch_size: int
    batch_in_flight: int
    query_samples: int
    stats_reps: int
    keep_db: bool
    skip_ingest: bool
    skip_queries: bool
    skip_purge: bool
    purge_batch_size: int
    reuse_db: bool


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke mode: 50k runs, short ingest (< 60 s)")
    parser.add_argument("--pg", default=os.environ.get("AGENTRUN_BENCH_PG", DEFAULT_ADMIN_URL), help="admin URL")
    parser.add_argument("--runs", type=int, help="runs to seed for the query figures")
    parser.add_argument("--step-runs", type=int, help="how many of them get their steps and tool calls")
    parser.add_argument("--ingest-runs", type=int, help="runs per ingest measurement (4 measurements)")
    parser.add_argument("--concurrency", type=int, default=8, help="calls / connections in flight while ingesting")
    parser.add_argument("--batch-size", type=int, default=100, help="runs per RecordRuns call (the outbox's maximum)")
    parser.add_argument("--batch-in-flight", type=int, default=2, help="RecordRuns calls in flight")
    parser.add_argument("--keep-db", action="store_true", help=f"keep the seeded database {BENCH_DB}")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-queries", action="store_true", help="no seeding, no query or purge figures")
    parser.add_argument("--skip-purge", action="store_true", help="no retention purge figures (they delete the seed)")
    parser.add_argument(
        "--purge-batch-size", type=int, default=200, help="runs per purge transaction (AGENTRUN_RETENTION_BATCH_SIZE)"
    )
    parser.add_argument(
        "--reuse-db",
        action="store_true",
        help=f"query the {BENCH_DB} database a --keep-db run left (no ingest, no seeding; implies --keep-db)",
    )
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    return Config(
        quick=quick,
        admin_url=args.pg,
        runs=args.runs or (50_000 if quick else 1_000_000),
        step_runs=args.step_runs or (10_000 if quick else 100_000),
        ingest_runs=args.ingest_runs or (150 if quick else 1_200),
        concurrency=args.concurrency,
        batch_size=args.batch_size,
        batch_in_flight=args.batch_in_flight,
        query_samples=150 if quick else 1_000,
        stats_reps=2 if quick else 5,
        keep_db=args.keep_db or args.reuse_db,
        skip_ingest=args.skip_ingest or args.reuse_db,
        skip_queries=args.skip_queries,
        skip_purge=args.skip_purge,
        purge_batch_size=args.purge_batch_size,
        reuse_db=args.reuse_db,
    )


# --- database and server ---------------------------------------------------------------------------------------


def _db_url(admin_url: str, name: str) -> str:
    """`admin_url` naming database `name` (a unix socket in `?host=` is kept)."""
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def recreate_database(admin_url: str, name: str = BENCH_DB) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _db_url(admin_url, name)
    upgrade(url, "head")
    return url


def existing_database(admin_url: str, name: str = BENCH_DB) -> str:
    """The URL of the bench database a --keep-db run left, migrated to head."""
    url = _db_url(admin_url, name)
    upgrade(url, "head")
    return url


def drop_database(admin_url: str, name: str = BENCH_DB) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class RunsServiceProcess:
    """RunsService in a subprocess (`python -m runs_service serve`) on 127.0.0.1:<free port>."""

    def __init__(
        self, db_url: str, data_dir: Path, extra_env: dict[str, str] | None = None, log_path: Path | None = None
    ) -> None:
        self.port = free_port()
        self._log = None if log_path is None else log_path.open("w")
        env = {
            **os.environ,
            "AGENTRUN_PAGE_TOKEN_SECRET": "bench-secret-0123456789abcdef",
            "AGENTRUN_LOG_LEVEL": "WARNING",
            "AGENTRUN_LOG_FORMAT": "text",
            "AGENTRUN_AUTH": "off",  # the benchmark measures storage, not authentication
            **(extra_env or {}),
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runs_service",
                "serve",
                "--address",
                f"127.0.0.1:{self.port}",
                "--database-url",
                db_url,
                "--data-dir",
                str(data_dir),
            ],
            env=env,
            stdout=self._log,
            stderr=self._log,
        )
        self.target = f"127.0.0.1:{self.port}"

    async def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with grpc.aio.insecure_channel(self.target) as channel:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"RunsService exited with {self.process.returncode}")
                try:
                    await asyncio.wait_for(channel.channel_ready(), 1.0)
                    return
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("RunsService did not start in time") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()


# --- ingest ------------------------------------------------------------------------------------------------------


def _ingest_batch(count: int, salt: int) -> list[Any]:
    return [
        make_run(agent=AGENTS[i % len(AGENTS)], user=USERS[i % len(USERS)], seed=salt * 1_000_000 + i)
        for i in range(count)
    ]


async def _drive(items: list[Any], concurrency: int, one: Callable[[Any, int], Awaitable[None]]) -> float:
    """Runs `one(item, worker)` over `items` with `concurrency` workers; returns the wall time."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)

    async def worker(index: int) -> None:
        while not queue.empty():
            await one(queue.get_nowait(), index)

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return time.perf_counter() - started


async def ingest_grpc(stub: rs_grpc.RunsServiceStub, requests: list[rs.RecordRunRequest], concurrency: int) -> float:
    async def one(request: rs.RecordRunRequest, _worker: int) -> None:
        reply = await stub.RecordRun(request)
        assert reply.outcome == rs.RECORD_OUTCOME_CREATED, reply

    return len(requests) / await _drive(requests, concurrency, one)


_RUN_COLUMNS = [c.name for c in runs.columns]
_STEP_COLUMNS = [c.name for c in run_steps.columns]
_TOOL_COLUMNS = [c.name for c in tool_calls.columns]
_JSON_RUN_COLUMNS = {"labels", "variables", "tools_used"}


def _insert(table: str, columns: list[str], suffix: str = "") -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}){suffix}"


_RAW_INSERT_RUN = _insert("runs", _RUN_COLUMNS, " ON CONFLICT (id) DO NOTHING RETURNING id")
_RAW_INSERT_STEP = _insert("run_steps", _STEP_COLUMNS)
_RAW_INSERT_TOOL = _insert("tool_calls", _TOOL_COLUMNS)


def _jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=orjson_text)


async def ingest_raw(conns: list[psycopg.AsyncConnection[Any]], batch: list[RunRows], concurrency: int) -> float:
    """The same rows as the repository writes, straight through psycopg: one transaction and one pipeline per run."""

    async def one(rows: RunRows, worker: int) -> None:
        conn = conns[worker]
        now = datetime.now(UTC)
        run_row = {**rows.run, "recorded_at": now, "updated_at": now}
        run_values = tuple(_jsonb(run_row[n]) if n in _JSON_RUN_COLUMNS else run_row[n] for n in _RUN_COLUMNS)
        steps = [tuple(_jsonb(s[n]) if n == "payload" else s[n] for n in _STEP_COLUMNS) for s in rows.steps]
        calls = [tuple(c[n] for n in _TOOL_COLUMNS) for c in rows.tool_calls]
        async with conn.transaction(), conn.pipeline(), conn.cursor() as cursor:
            await cursor.execute(_RAW_INSERT_RUN, run_values)
            await cursor.executemany(_RAW_INSERT_STEP, steps)
            await cursor.executemany(_RAW_INSERT_TOOL, calls)

    return len(batch) / await _drive(batch, concurrency, one)


@dataclass
class CpuPerRun:
    """CPU milliseconds per run spent by each process of a measurement (summed over its repetitions)."""

    runs: int = 0
    server_s: float = 0.0
    postgres_s: float = 0.0
    client_s: float = 0.0

    def line(self) -> str:
        per = 1e3 / max(self.runs, 1)
        parts = [f"client {self.client_s * per:.2f}", f"PostgreSQL {self.postgres_s * per:.2f}"]
        if self.server_s:
            parts.insert(1, f"RunsService {self.server_s * per:.2f}")
        return f"{', '.join(parts)}; total {self.total_ms():.2f} ms"

    def total_ms(self) -> float:
        return (self.server_s + self.postgres_s + self.client_s) * 1e3 / max(self.runs, 1)


async def _measured(call: Callable[[], Awaitable[float]], runs: int, cpu: CpuPerRun, server_pid: int | None) -> float:
    """Runs one ingest measurement, adding the CPU each process used to `cpu`; returns its rate."""
    before = (process_cpu_s(server_pid) if server_pid else 0.0, processes_cpu_s("postgres"), time.process_time())
    rate = await call()
    after = (process_cpu_s(server_pid) if server_pid else 0.0, processes_cpu_s("postgres"), time.process_time())
    cpu.runs += runs
    cpu.server_s += after[0] - before[0]
    cpu.postgres_s += after[1] - before[1]
    cpu.client_s += after[2] - before[2]
    return rate


async def ingest_grpc_batches(
    stub: rs_grpc.RunsServiceStub, requests: list[rs.RecordRunsRequest], concurrency: int
) -> float:
    """RecordRuns, `concurrency` calls in flight (what the outbox does under load); returns runs per second."""

    async def one(request: rs.RecordRunsRequest, _worker: int) -> None:
        reply = await stub.RecordRuns(request)
        assert all(r.outcome == rs.RECORD_OUTCOME_CREATED for r in reply.results), reply

    runs_sent = sum(len(r.requests) for r in requests)
    return runs_sent / await _drive(requests, concurrency, one)


def _batched(runs_: list[Any], size: int) -> list[rs.RecordRunsRequest]:
    return [
        rs.RecordRunsRequest(requests=[rs.RecordRunRequest(run=run_to_pb(r)) for r in runs_[i : i + size]])
        for i in range(0, len(runs_), size)
    ]


async def bench_ingest(cfg: Config, db_url: str, server: RunsServiceProcess) -> dict[str, float]:
    header(
        f"Ingest: RecordRuns (gRPC -> RunsService -> PostgreSQL, batches of {cfg.batch_size}, {cfg.batch_in_flight} "
        f"calls in flight) vs raw psycopg ({cfg.concurrency} connections); RecordRun ({cfg.concurrency} in flight)"
    )
    print(
        f"{cfg.ingest_runs} runs of 40 steps + 15 tool calls per measurement; order A, B, A, B, C, B",
        flush=True,
    )
    batches = [_ingest_batch(cfg.ingest_runs, salt) for salt in range(6)]
    batch_requests = {i: _batched(batches[i], cfg.batch_size) for i in (0, 2)}
    single_requests = [rs.RecordRunRequest(run=run_to_pb(r)) for r in batches[4]]
    raw_rows = {i: [run_to_rows(r) for r in batches[i]] for i in (1, 3, 5)}
    # Warm every path (connections, server caches, plan caches) on a few runs that are not counted.
    warm = _ingest_batch(6 * cfg.concurrency, 99)
    conns = [await psycopg.AsyncConnection.connect(db_url) for _ in range(cfg.concurrency)]
    rates: dict[str, list[float]] = {"A": [], "B": [], "C": []}
    cpu = {"A": CpuPerRun(), "B": CpuPerRun(), "C": CpuPerRun()}
    names = {"A": "gRPC RecordRuns", "B": "raw psycopg    ", "C": "gRPC RecordRun "}
    server_pid = server.process.pid
    try:
        async with grpc.aio.insecure_channel(server.target, options=[("grpc.max_send_message_length", -1)]) as channel:
            stub = rs_grpc.RunsServiceStub(channel)
            await ingest_grpc_batches(stub, _batched(warm[0::3], cfg.concurrency), 2)
            await ingest_grpc(stub, [rs.RecordRunRequest(run=run_to_pb(r)) for r in warm[1::3]], cfg.concurrency)
            await ingest_raw(conns, [run_to_rows(r) for r in warm[2::3]], cfg.concurrency)
            plan: list[tuple[str, Callable[[], Awaitable[float]], int, int | None]] = []
            for i in range(6):
                if i in (0, 2):
                    call: Callable[[], Awaitable[float]] = functools.partial(
                        ingest_grpc_batches, stub, batch_requests[i], cfg.batch_in_flight
                    )
                    plan.append(("A", call, cfg.ingest_runs, server_pid))
                elif i == 4:
                    call = functools.partial(ingest_grpc, stub, single_requests, cfg.concurrency)
                    plan.append(("C", call, cfg.ingest_runs, server_pid))
                else:
                    call = functools.partial(ingest_raw, conns, raw_rows[i], cfg.concurrency)
                    plan.append(("B", call, cfg.ingest_runs, None))
            for key, call, count, pid in plan:
                rate = await _measured(call, count, cpu[key], pid)
                rates[key].append(rate)
                print(f"  {key} {names[key]}: {rate:8.1f} runs/s", flush=True)
    finally:
        for conn in conns:
            await conn.close()
    batch_rate = sum(rates["A"]) / len(rates["A"])
    raw_rate = sum(rates["B"][:2]) / 2  # the two B measurements interleaved with A
    single_rate = rates["C"][0]
    ratio = batch_rate / raw_rate
    print(
        f"RecordRuns {batch_rate:.1f} runs/s, raw psycopg {raw_rate:.1f} runs/s: ratio {ratio:.2f} "
        f"(goal >= {GOALS['ingest_ratio']}: {verdict(ratio >= GOALS['ingest_ratio'])})",
        flush=True,
    )
    print(
        f"RecordRun (one run per call) {single_rate:.1f} runs/s: ratio {single_rate / rates['B'][2]:.2f} to the B "
        "measured next to it",
        flush=True,
    )
    # Where the CPU goes: on a machine whose cores are all busy, the ratio cannot exceed B's CPU per run over A's.
    server_ms = cpu["A"].server_s * 1e3 / max(cpu["A"].runs, 1)
    print(f"CPU per run, A: {cpu['A'].line()}", flush=True)
    print(f"CPU per run, B: {cpu['B'].line()}", flush=True)
    print(f"CPU per run, C: {cpu['C'].line()}", flush=True)
    print(
        f"RunsService CPU per stored run (RecordRuns): {server_ms:.2f} ms "
        f"(goal <= {GOALS['server_cpu_ms']}: {verdict(server_ms <= GOALS['server_cpu_ms'])})",
        flush=True,
    )
    ceiling = cpu["B"].total_ms() / cpu["A"].total_ms()
    print(f"CPU-bound ceiling of the ratio (B's CPU per run / A's): {ceiling:.2f} ({os.cpu_count()} cores)", flush=True)
    return {
        "batch_runs_s": batch_rate,
        "raw_runs_s": raw_rate,
        "ratio": ratio,
        "single_runs_s": single_rate,
        "server_cpu_ms": server_ms,
        "cpu_ceiling": ceiling,
    }


# --- seeding with COPY -------------------------------------------------------------------------------------------


def _esc(value: Any) -> str:
    """One value in COPY text format."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        value = orjson_text(value)
    text = str(value) if not isinstance(value, str) else value
    if any(c in text for c in "\\\t\n\r"):
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


@dataclass(frozen=True)
class RowTemplate:
    """One row as COPY text fields, with holes: the run id at `id_index`, times at (index, offset from start)."""

    fields: list[str]
    id_index: int
    times: list[tuple[int, timedelta]]

    def line(self, run_id: str, start: datetime) -> str:
        fields = self.fields.copy()
        fields[self.id_index] = run_id
        for index, offset in self.times:
            fields[index] = (start + offset).isoformat()
        return "\t".join(fields) + "\n"


@dataclass(frozen=True)
class Template:
    """A make_run() run as COPY text templates for its run row, step rows and tool call rows."""

    run: RowTemplate
    steps: list[RowTemplate]
    calls: list[RowTemplate]


def _row_template(row: dict[str, Any], columns: list[str], id_column: str, base: datetime) -> RowTemplate:
    fields = [_esc(row[name]) for name in columns]
    times = [(i, row[name] - base) for i, name in enumerate(columns) if isinstance(row[name], datetime)]
    return RowTemplate(fields, columns.index(id_column), times)


def build_templates(count: int, base: datetime) -> list[Template]:
    """Runs made by make_run() starting at `base`, as the rows run_to_rows() gives (what RecordRun writes)."""
    templates = []
    for t in range(count):
        run = make_run(
            agent=AGENTS[t % len(AGENTS)],
            user=USERS[(t * 7) % len(USERS)],
            status=STATUS_MIX[(t // len(AGENTS)) % len(STATUS_MIX)],
            model=MODELS[(t // 7) % len(MODELS)],
            start_time=base,
            seed=t,
        )
        rows = run_to_rows(run)
        stamp = run.end_time or base
        run_row = {**rows.run, "recorded_at": stamp, "updated_at": stamp}
        templates.append(
            Template(
                run=_row_template(run_row, _RUN_COLUMNS, "id", base),
                steps=[_row_template(s, _STEP_COLUMNS, "run_id", base) for s in rows.steps],
                calls=[_row_template(c, _TOOL_COLUMNS, "run_id", base) for c in rows.tool_calls],
            )
        )
    return templates


def _uuid7(ms: int, counter: int) -> str:
    value = (ms << 80) | (0x7 << 76) | (((counter >> 62) & 0xFFF) << 64) | (0b10 << 62) | (counter & ((1 << 62) - 1))
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True)
class Seeded:
    all_ids: list[str]
    step_ids: list[str]
    window_start: datetime
    window_end: datetime


def _chunks(lines: Iterator[str], size: int = 20_000) -> Iterator[bytes]:
    buffer: list[str] = []
    for line in lines:
        buffer.append(line)
        if len(buffer) >= size:
            yield "".join(buffer).encode()
            buffer.clear()
    if buffer:
        yield "".join(buffer).encode()


def seed(db_url: str, count: int, step_runs: int) -> Seeded:
    """TRUNCATE + COPY FREEZE of `count` runs (steps and tool calls for `step_runs` of them), then indexes and
    ANALYZE. Secondary indexes are dropped during the load and rebuilt after it (as a bulk load should)."""
    header(f"Seeding {count:,} runs ({step_runs:,} with 40 steps + 15 tool calls) with COPY")
    now = datetime.now(UTC).replace(microsecond=0)
    window_end = now + timedelta(minutes=1)
    window_start = now - timedelta(days=30)
    first = now - timedelta(days=29, hours=23)
    span_us = int((now - first) / timedelta(microseconds=1))
    templates = build_templates(TEMPLATES, first)
    rng = random.Random(7)
    every = max(1, count // max(step_runs, 1)) if step_runs else 0
    starts = [first + timedelta(microseconds=span_us * i // count + rng.randrange(1000)) for i in range(count)]
    ids = [_uuid7(int(s.timestamp() * 1000), i) for i, s in enumerate(starts)]
    with_steps = [i for i in range(count) if every and i % every == 0][:step_runs]
    pick = [rng.randrange(len(templates)) for _ in range(count)]

    def run_lines() -> Iterator[str]:
        for i in range(count):
            yield templates[pick[i]].run.line(ids[i], starts[i])

    def step_lines() -> Iterator[str]:
        for i in with_steps:
            run_id, start = ids[i], starts[i]
            for step in templates[pick[i]].steps:
                yield step.line(run_id, start)

    def call_lines() -> Iterator[str]:
        for i in with_steps:
            run_id, start = ids[i], starts[i]
            for call in templates[pick[i]].calls:
                yield call.line(run_id, start)

    secondary = [ix for table in (runs, run_steps, tool_calls) for ix in table.indexes]
    started = time.perf_counter()
    with psycopg.connect(db_url) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("SET session_replication_role = replica")  # no FK trigger per row: the rows are consistent
        conn.execute("TRUNCATE runs, run_steps, tool_calls")
        for ix in secondary:
            conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(str(ix.name))))
        for table, columns, lines in (
            ("runs", _RUN_COLUMNS, run_lines()),
            ("run_steps", _STEP_COLUMNS, step_lines()),
            ("tool_calls", _TOOL_COLUMNS, call_lines()),
        ):
            t0 = time.perf_counter()
            statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FREEZE)"
            with conn.cursor() as cursor, cursor.copy(statement) as copy:
                for chunk in _chunks(lines):
                    copy.write(chunk)
            print(f"  COPY {table:<10} {time.perf_counter() - t0:6.1f} s", flush=True)
        conn.commit()
        t0 = time.perf_counter()
        conn.autocommit = True
        for ix in secondary:
            conn.execute(str(CreateIndex(ix).compile(dialect=postgresql.dialect())))
        print(f"  indexes          {time.perf_counter() - t0:6.1f} s", flush=True)
        t0 = time.perf_counter()
        conn.execute("ANALYZE runs")
        conn.execute("ANALYZE run_steps")
        conn.execute("ANALYZE tool_calls")
        print(f"  ANALYZE          {time.perf_counter() - t0:6.1f} s", flush=True)
        sizes = conn.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('runs')),"
            " pg_size_pretty(pg_total_relation_size('run_steps')),"
            " pg_size_pretty(pg_total_relation_size('tool_calls'))"
        ).fetchone()
    print(
        f"seeded in {time.perf_counter() - started:.1f} s; sizes (with indexes): runs {sizes[0] if sizes else '?'}, "
        f"run_steps {sizes[1] if sizes else '?'}, tool_calls {sizes[2] if sizes else '?'}",
        flush=True,
    )
    return Seeded(all_ids=ids, step_ids=[ids[i] for i in with_steps], window_start=window_start, window_end=window_end)


def read_seeded(db_url: str, name: str = BENCH_DB) -> Seeded:
    """What seed() returned, read back from a database it filled (for --reuse-db)."""
    with psycopg.connect(db_url) as conn:
        all_ids = [row[0] for row in conn.execute("SELECT id FROM runs")]
        step_ids = [row[0] for row in conn.execute("SELECT DISTINCT run_id FROM run_steps")]
        bounds = conn.execute("SELECT min(start_time), max(start_time) FROM runs").fetchone()
    if not all_ids or bounds is None or bounds[0] is None:
        raise SystemExit(f"--reuse-db: {name} holds no runs; run once with --keep-db first")
    print(f"reusing {name}: {len(all_ids):,} runs, {len(step_ids):,} with steps", flush=True)
    window_start = bounds[0] - timedelta(hours=1)
    return Seeded(all_ids, step_ids, window_start, window_start + timedelta(days=30, minutes=1))


# --- queries -----------------------------------------------------------------------------------------------------


def _ts(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


async def _timed(call: Callable[[], Awaitable[Any]], samples: int) -> list[float]:
    durations = []
    for _ in range(samples):
        t0 = time.perf_counter()
        await call()
        durations.append(time.perf_counter() - t0)
    return durations


async def bench_queries(cfg: Config, seeded: Seeded, target: str) -> dict[str, float]:
    header(f"Queries through gRPC at {cfg.runs:,} runs (one call in flight)")
    rng = random.Random(11)
    out: dict[str, float] = {}
    async with grpc.aio.insecure_channel(target) as channel:
        stub = rs_grpc.RunsServiceStub(channel)

        def get_run(ids: list[str], view: int) -> Callable[[], Awaitable[Any]]:
            async def call() -> None:
                reply = await stub.GetRun(rs.GetRunRequest(run_id=rng.choice(ids), view=view))  # type: ignore[arg-type]
                assert reply.run.id

            return call

        for name, ids, view in (
            ("GetRun FULL ", seeded.step_ids, rs.RUN_VIEW_FULL),
            ("GetRun BASIC", seeded.all_ids, rs.RUN_VIEW_BASIC),
        ):
            await _timed(get_run(ids, view), 20)  # warm-up
            durations = await _timed(get_run(ids, view), cfg.query_samples)
            p99 = percentile(durations, 0.99) * 1e3
            out[f"{name.strip()}_p50_ms"] = percentile(durations, 0.5) * 1e3
            out[f"{name.strip()}_p99_ms"] = p99
            print(
                f"{name}: {summary_ms(durations)}  goal p99 < {GOALS['get_run_p99_ms']} ms: "
                f"{verdict(p99 < GOALS['get_run_p99_ms'])}",
                flush=True,
            )
        if seeded.step_ids:
            full = await stub.GetRun(rs.GetRunRequest(run_id=seeded.step_ids[0], view=rs.RUN_VIEW_FULL))
            print(
                f"  (a FULL run: {len(full.run.execution_steps)} steps, {len(full.run.tool_calls)} tool calls, "
                f"{full.run.ByteSize():,} bytes)"
            )

        statuses = ["COMPLETED", "FAILED"]

        async def list_runs() -> None:
            flt = f'agent_name = "{rng.choice(AGENTS)}" AND status = {rng.choice(statuses)}'
            reply = await stub.ListRuns(rs.ListRunsRequest(filter=flt, page_size=50))
            assert len(reply.runs) == 50, (flt, len(reply.runs))

        await _timed(list_runs, 20)
        durations = await _timed(list_runs, cfg.query_samples)
        p99 = percentile(durations, 0.99) * 1e3
        out["ListRuns_p50_ms"], out["ListRuns_p99_ms"] = percentile(durations, 0.5) * 1e3, p99
        print(
            f"ListRuns agent+status, 50: {summary_ms(durations)}  goal p99 < {GOALS['list_runs_p99_ms']} ms: "
            f"{verdict(p99 < GOALS['list_runs_p99_ms'])}",
            flush=True,
        )

        # What `agentrun runs show|watch|cancel` send to resolve a part of an id (agentrun_cli.run_ids): a prefix
        # (13 characters: the whole millisecond timestamp) and a suffix (8 characters, as `runs list` prints ids).
        for key, label, part in (
            ("ListRuns_id_prefix", "ListRuns id prefix (13 chars)", lambda run_id: f'id = "{run_id[:13]}*"'),
            ("ListRuns_id_suffix", "ListRuns id suffix ( 8 chars)", lambda run_id: f'id = "*{run_id[-8:]}"'),
        ):

            async def resolve(part: Callable[[str], str] = part) -> None:
                run_id = rng.choice(seeded.all_ids)
                reply = await stub.ListRuns(rs.ListRunsRequest(filter=part(run_id), page_size=11))
                assert run_id in {run.id for run in reply.runs}

            await _timed(resolve, 20)
            durations = await _timed(resolve, cfg.query_samples)
            out[f"{key}_p99_ms"] = percentile(durations, 0.99) * 1e3
            print(f"{label}, 11: {summary_ms(durations)}", flush=True)

        start, end = _ts(seeded.window_start), _ts(seeded.window_end)
        for label, group_by in (("agent", rs.STATS_GROUP_BY_AGENT), ("model", rs.STATS_GROUP_BY_MODEL)):
            request = rs.GetRunStatsRequest(start_time=start, end_time=end, group_by=group_by)
            groups: list[Any] = []

            async def stats_call(request: rs.GetRunStatsRequest = request, groups: list[Any] = groups) -> None:
                groups[:] = list((await stub.GetRunStats(request, timeout=120)).groups)

            durations = await _timed(stats_call, cfg.stats_reps)
            counted = sum(g.run_count for g in groups)
            ms = median(durations) * 1e3
            out[f"GetRunStats_{label}_ms"] = ms
            print(
                f"GetRunStats 30 days by {label}: median {ms:7.1f} ms  max {max(durations) * 1e3:7.1f} ms "
                f"({len(groups)} groups, {counted:,} runs; goal < {GOALS['stats_ms']:.0f} ms: "
                f"{verdict(ms < GOALS['stats_ms'])})",
                flush=True,
            )

        tool_request = rs.GetToolStatsRequest(start_time=start, end_time=end)

        async def tool_stats() -> None:
            await stub.GetToolStats(tool_request, timeout=120)

        durations = await _timed(tool_stats, cfg.stats_reps)
        out["GetToolStats_ms"] = median(durations) * 1e3
        print(
            f"GetToolStats 30 days: median {median(durations) * 1e3:7.1f} ms  max {max(durations) * 1e3:7.1f} ms "
            f"({len(seeded.step_ids) * 15:,} tool calls)",
            flush=True,
        )
    return out


# --- retention purge ---------------------------------------------------------------------------------------------

PURGE_RETENTION = "1h"  # every seeded run but the last hour's is expired; runs ingested during the bench are not


def _expired_count(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM runs WHERE start_time < now() - interval '1 hour'").fetchone()
    return int(row[0]) if row else 0


def _recent_ids(db_url: str, limit: int) -> list[str]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT id FROM runs WHERE start_time > now() - interval '50 minutes' LIMIT %s", (limit,)
        ).fetchall()
    return [row[0] for row in rows]


async def _get_run_p99(target: str, ids: list[str], view: int, samples: int) -> float:
    rng = random.Random(5)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = rs_grpc.RunsServiceStub(channel)

        async def call() -> None:
            reply = await stub.GetRun(rs.GetRunRequest(run_id=rng.choice(ids), view=view))  # type: ignore[arg-type]
            assert reply.run.id

        await _timed(call, 20)
        return percentile(await _timed(call, samples), 0.99) * 1e3


async def _ingest_rate(target: str, runs_: list[Any], cfg: Config) -> float:
    async with grpc.aio.insecure_channel(target, options=[("grpc.max_send_message_length", -1)]) as channel:
        stub = rs_grpc.RunsServiceStub(channel)
        return await ingest_grpc_batches(stub, _batched(runs_, cfg.batch_size), cfg.batch_in_flight)


async def bench_purge(cfg: Config, db_url: str, base: RunsServiceProcess, tmp: Path) -> dict[str, float]:
    """Ingest (RecordRuns) and GetRun p99 without a purge (B) and while RunsService purges the expired runs (P),
    in the order B, P, P, B; the purge runs in the RunsService process that serves P's calls."""
    expired = await asyncio.to_thread(_expired_count, db_url)
    header(
        f"Retention purge of {expired:,} expired runs in progress (AGENTRUN_RETENTION={PURGE_RETENTION}, "
        f"AGENTRUN_RETENTION_BATCH_SIZE={cfg.purge_batch_size})"
    )
    purger_log = tmp / "purger.log"
    fresh = _ingest_batch(200, 77)
    await _ingest_rate(base.target, fresh, cfg)
    full_ids = [run.id for run in fresh]
    basic_ids = await asyncio.to_thread(_recent_ids, db_url, 2_000) or full_ids
    purger: RunsServiceProcess | None = None
    rates: dict[str, list[float]] = {"B": [], "P": []}
    p99s: dict[str, list[float]] = {"B": [], "P": []}
    purge_window: list[tuple[float, int]] = []
    samples = cfg.query_samples // 2
    try:
        for index, phase in enumerate("BPPB"):
            if phase == "P" and purger is None:
                purger = RunsServiceProcess(
                    db_url,
                    tmp / "purger",
                    {
                        "AGENTRUN_RETENTION": PURGE_RETENTION,
                        "AGENTRUN_RETENTION_INTERVAL_S": "86400",
                        "AGENTRUN_RETENTION_BATCH_SIZE": str(cfg.purge_batch_size),
                        "AGENTRUN_LOG_LEVEL": "INFO",
                        "AGENTRUN_LOG_FORMAT": "json",
                    },
                    log_path=purger_log,
                )
                await purger.wait_ready()
                deadline = time.monotonic() + 60
                while await asyncio.to_thread(_expired_count, db_url) >= expired:  # the purge has begun
                    assert time.monotonic() < deadline, "the purge did not start"
                    await asyncio.sleep(0.2)
                purge_window.append((time.monotonic(), await asyncio.to_thread(_expired_count, db_url)))
            if phase == "B" and purger is not None:
                purge_window.append((time.monotonic(), await asyncio.to_thread(_expired_count, db_url)))
                purger.stop()
                purger = None
            target = (purger or base).target
            rate = await _ingest_rate(target, _ingest_batch(cfg.ingest_runs, 200 + index), cfg)
            full = await _get_run_p99(target, full_ids, rs.RUN_VIEW_FULL, samples)
            basic = await _get_run_p99(target, basic_ids, rs.RUN_VIEW_BASIC, samples)
            rates[phase].append(rate)
            p99s[phase].append(max(full, basic))
            label = "without purge" if phase == "B" else "during purge "
            elsewhere = ""
            if purger is not None:  # where the delay comes from: the purging process, or the database and CPUs
                other = await _get_run_p99(base.target, full_ids, rs.RUN_VIEW_FULL, samples)
                elsewhere = f"; FULL through a RunsService that is not purging {other:5.2f} ms"
            print(
                f"  {phase} {label}: RecordRuns {rate:7.1f} runs/s; GetRun p99 FULL {full:5.2f} ms, "
                f"BASIC {basic:5.2f} ms{elsewhere}",
                flush=True,
            )
    finally:
        if purger is not None:
            purger.stop()
    ratio = sum(rates["P"]) / sum(rates["B"])
    worst = max(p99s["P"])
    (t_start, left_start), (t_end, left_end) = purge_window
    purged = left_start - left_end
    print(
        f"ingest during the purge / without: {ratio:.2f} (goal >= 0.8: {verdict(ratio >= 0.8)}); "
        f"GetRun p99 during the purge {worst:.2f} ms (goal < 5 ms: {verdict(worst < 5.0)})",
        flush=True,
    )
    print(
        f"the purge deleted {purged:,} runs in the {t_end - t_start:.1f} s measured "
        f"({purged / max(t_end - t_start, 1e-6):,.0f} runs/s at the default batch size and duty)",
        flush=True,
    )
    batches = _purge_batches(purger_log)
    if batches:
        print(
            f"purge batches of {batches['batch_size']} runs: {batches['batches']} batches, mean "
            f"{batches['mean_batch_ms']:.1f} ms, longest {batches['longest_batch_ms']:.1f} ms (one transaction each)",
            flush=True,
        )
    return {
        "purge_ingest_ratio": ratio,
        "purge_get_run_p99_ms": worst,
        "purge_longest_batch_ms": float(batches.get("longest_batch_ms", 0.0)),
    }


def _purge_batches(log_path: Path) -> dict[str, Any]:
    """The purging RunsService's own account of its batches (its "retention purge stopped" log line)."""
    for line in reversed(log_path.read_text().splitlines()):
        if '"retention purge stopped"' in line:
            found: dict[str, Any] = json.loads(line)
            return found
    print(f"(the purging RunsService logged no batch figures: see {log_path})", flush=True)
    return {}


async def amain(cfg: Config) -> None:
    print(
        f"runs_store benchmark ({'quick' if cfg.quick else 'full'}); {os.cpu_count()} CPUs, shared machine", flush=True
    )
    t0 = time.perf_counter()
    prepare = existing_database if cfg.reuse_db else recreate_database
    db_url = await asyncio.to_thread(prepare, cfg.admin_url)
    with tempfile.TemporaryDirectory(prefix="agentrun-bench-") as tmp:
        server = RunsServiceProcess(db_url, Path(tmp))
        try:
            await server.wait_ready()
            if not cfg.skip_ingest:
                await bench_ingest(cfg, db_url, server)
            if not cfg.skip_queries:
                if cfg.reuse_db:
                    seeded = await asyncio.to_thread(read_seeded, db_url)
                else:
                    seeded = await asyncio.to_thread(seed, db_url, cfg.runs, cfg.step_runs)
                await bench_queries(cfg, seeded, server.target)
                if not cfg.skip_purge:
                    await bench_purge(cfg, db_url, server, Path(tmp))
        finally:
            server.stop()
            if not cfg.keep_db:
                await asyncio.to_thread(drop_database, cfg.admin_url)
    print(f"\ndone in {time.perf_counter() - t0:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    asyncio.run(asyncio.wait_for(amain(cfg), timeout=240 if cfg.quick else 1800))


if __name__ == "__main__":
    main()
