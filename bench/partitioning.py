"""Would time partitioning of run_steps make deleting old runs cheaper? A measurement on PostgreSQL.

    .venv/bin/python bench/partitioning.py            # 30 days x 3,300 runs of 40 steps (4M step rows per table)
    .venv/bin/python bench/partitioning.py --quick    # 3 days

Two copies of run_steps hold the same rows: `steps_plain` (as today: primary key (run_id, sequence)) and
`steps_part`, partitioned by day on the run's start time (which then has to be a column of every step row and part
of the primary key). For each it measures:
1. deleting one day of steps: on the plain table batch by batch as the retention purge does (the runs' ids, 500
   at a time, one transaction each), on the partitioned one by DETACH + DROP of the day's partition;
2. reading one run's steps by run id, as GetRun FULL does (the partitioned table without the start time probes every
   partition; with it, one);
3. writing 1,000 runs' steps with COPY (ingest).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
from psycopg import sql

from bench._util import header, median, percentile
from bench.runs_store import DEFAULT_ADMIN_URL, _db_url

DB = "agentrun_bench_partition"
RUNS_PER_DAY = 3_300
STEPS = 40
PAYLOAD = '{"model": "gemini-2.5-flash", "usage": {"input_tokens": 1200, "output_tokens": 80}, "text": "%s"}'

COLUMNS = "run_id varchar(36), sequence int, run_start timestamptz, time timestamptz, duration_us bigint, "
COLUMNS += "kind varchar(16), payload jsonb"


def _rows(run_id: str, start: datetime) -> list[tuple[object, ...]]:
    return [
        (run_id, seq, start, start + timedelta(seconds=seq), 1000 * seq, "model_call", PAYLOAD % ("x" * 60))
        for seq in range(1, STEPS + 1)
    ]


def setup(conn: psycopg.Connection, days: int, first: datetime) -> dict[int, list[str]]:
    conn.execute(f"CREATE TABLE steps_plain ({COLUMNS}, PRIMARY KEY (run_id, sequence))")
    conn.execute(
        f"CREATE TABLE steps_part ({COLUMNS}, PRIMARY KEY (run_id, sequence, run_start)) PARTITION BY RANGE (run_start)"
    )
    for day in range(days + 2):
        lo, hi = first + timedelta(days=day), first + timedelta(days=day + 1)
        conn.execute(
            sql.SQL("CREATE TABLE {} PARTITION OF steps_part FOR VALUES FROM ({}) TO ({})").format(
                sql.Identifier(f"steps_part_d{day}"), sql.Literal(lo), sql.Literal(hi)
            )
        )
    ids: dict[int, list[str]] = {}
    rng = random.Random(3)
    for day in range(days):
        ids[day] = [str(uuid.uuid4()) for _ in range(RUNS_PER_DAY)]
        for table in ("steps_plain", "steps_part"):
            with conn.cursor() as cursor, cursor.copy(f"COPY {table} FROM STDIN") as copy:
                for run_id in ids[day]:
                    start = first + timedelta(days=day, seconds=rng.randrange(86_000))
                    for row in _rows(run_id, start):
                        copy.write_row(row)
        conn.commit()
    conn.execute("ANALYZE steps_plain")
    conn.execute("ANALYZE steps_part")
    conn.commit()
    return ids


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pg", default=os.environ.get("AGENTRUN_BENCH_PG", DEFAULT_ADMIN_URL))
    args = parser.parse_args(argv)
    days = 3 if args.quick else 30
    with psycopg.connect(args.pg, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    try:
        with psycopg.connect(_db_url(args.pg, DB)) as conn:
            first = datetime(2026, 1, 1, tzinfo=UTC)
            header(f"Loading {days} days x {RUNS_PER_DAY:,} runs x {STEPS} steps into both tables")
            t0 = time.perf_counter()
            ids = setup(conn, days, first)
            print(f"loaded in {time.perf_counter() - t0:.1f} s", flush=True)

            header("1. Deleting the oldest day's steps")
            day_ids = ids[0]
            t0 = time.perf_counter()
            batches = []
            for i in range(0, len(day_ids), 500):
                b0 = time.perf_counter()
                conn.execute("DELETE FROM steps_plain WHERE run_id = ANY(%s)", (day_ids[i : i + 500],))
                conn.commit()
                batches.append(time.perf_counter() - b0)
            plain_s = time.perf_counter() - t0
            rows = len(day_ids) * STEPS
            print(
                f"plain, batches of 500 runs: {plain_s * 1e3:8.1f} ms for {rows:,} rows "
                f"({rows / plain_s:,.0f} rows/s; a batch: median {median(batches) * 1e3:.1f} ms, "
                f"max {max(batches) * 1e3:.1f} ms)",
                flush=True,
            )
            t0 = time.perf_counter()
            conn.execute("ALTER TABLE steps_part DETACH PARTITION steps_part_d0")
            conn.execute("DROP TABLE steps_part_d0")
            conn.commit()
            part_s = time.perf_counter() - t0
            print(f"partitioned, DETACH + DROP: {part_s * 1e3:8.1f} ms for the same rows", flush=True)

            header("2. One run's steps by id (GetRun FULL), 1,000 lookups")
            rng = random.Random(9)
            sample = [rng.choice(ids[rng.randrange(1, days)]) for _ in range(1_000)]
            for label, query in (
                ("plain (run_id)", "SELECT * FROM steps_plain WHERE run_id = %s ORDER BY sequence"),
                ("partitioned, run_id only", "SELECT * FROM steps_part WHERE run_id = %s ORDER BY sequence"),
            ):
                timings = []
                for run_id in sample:
                    q0 = time.perf_counter()
                    found = conn.execute(query, (run_id,)).fetchall()
                    timings.append(time.perf_counter() - q0)
                    assert len(found) == STEPS
                p50, p99 = percentile(timings, 0.5) * 1e3, percentile(timings, 0.99) * 1e3
                print(f"{label:<28} p50 {p50:.3f} ms  p99 {p99:.3f} ms", flush=True)

            header("3. COPY of 1,000 runs' steps (ingest)")
            for table in ("steps_plain", "steps_part"):
                c0 = time.perf_counter()
                with conn.cursor() as cursor, cursor.copy(f"COPY {table} FROM STDIN") as copy:
                    for _ in range(1_000):
                        for row in _rows(str(uuid.uuid4()), first + timedelta(days=days - 1, hours=5)):
                            copy.write_row(row)
                conn.commit()
                print(f"{table:<12} {(time.perf_counter() - c0) * 1e3:8.1f} ms", flush=True)
    finally:
        with psycopg.connect(args.pg, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))


if __name__ == "__main__":
    main()
