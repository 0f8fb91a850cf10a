"""ExportRuns benchmark on PostgreSQL: throughput and the RunsService process's memory over a large export.

    .venv/bin/python bench/export.py            # full: 1,000,000 runs (100,000 with steps)
    .venv/bin/python bench/export.py --quick    # smoke: 100,000 runs (10,000 with steps)

The database is seeded like bench/runs_store.py (COPY of make_run() templates; steps and tool calls for one run in
ten), RunsService runs as a subprocess, and:
1. ExportRuns BASIC of every run through gRPC (a grpc.aio client that only counts), while a thread samples the
   RunsService process's RSS every 100 ms: runs/s, and the RSS at the start, its peak, and at the end;
2. ExportRuns FULL of the runs with steps (filter `start_time < ...` over a slice), runs/s;
3. `agentrun runs export --format jsonl|csv|parquet` (the CLI as a user runs it) of a slice to a file: runs/s.

Goals: BASIC >= 5,000 runs/s, and RSS flat (the peak within 64 MB of the start: the export never holds the result).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import grpc
import psycopg
from agentrun.runs.v1 import runs_service_pb2 as rs
from agentrun.runs.v1 import runs_service_pb2_grpc as rs_grpc

from bench._util import header, verdict
from bench.runs_store import (
    DEFAULT_ADMIN_URL,
    RunsServiceProcess,
    drop_database,
    existing_database,
    recreate_database,
    seed,
)

EXPORT_DB = "agentrun_bench_export"
GOAL_RUNS_S = 5_000.0
GOAL_RSS_GROWTH_MB = 64.0


@dataclass(frozen=True)
class Config:
    admin_url: str
    runs: int
    step_runs: int
    cli_runs: int
    reuse_db: bool
    keep_db: bool


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100k runs")
    parser.add_argument("--pg", default=os.environ.get("AGENTRUN_BENCH_PG", DEFAULT_ADMIN_URL), help="admin URL")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--step-runs", type=int)
    parser.add_argument("--cli-runs", type=int, help="runs the CLI exports per format")
    parser.add_argument("--reuse-db", action="store_true", help=f"use the {EXPORT_DB} a --keep-db run left")
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args(argv)
    runs = args.runs or (100_000 if args.quick else 1_000_000)
    return Config(
        admin_url=args.pg,
        runs=runs,
        step_runs=args.step_runs or runs // 10,
        cli_runs=args.cli_runs or min(runs, 200_000),
        reuse_db=args.reuse_db,
        keep_db=args.keep_db or args.reuse_db,
    )


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    """Samples a process's RSS every `every_s` in a thread."""

    def __init__(self, pid: int, every_s: float = 0.1) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - started, rss_mb(self.pid)))
            self._stop.wait(self._every_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def line(self) -> str:
        values = [v for _, v in self.samples]
        quarter = max(1, len(values) // 4)
        return (
            f"RSS start {values[0]:.0f} MB, peak {max(values):.0f} MB, end {values[-1]:.0f} MB; "
            f"mean of each quarter {' / '.join(f'{sum(q) / len(q):.0f}' for q in _quarters(values, quarter))} MB "
            f"({len(values)} samples)"
        )


def _quarters(values: list[float], size: int) -> list[list[float]]:
    return [values[i : i + size] for i in range(0, len(values), size) if values[i : i + size]][:4]


async def export_count(target: str, request: rs.ExportRunsRequest) -> tuple[int, float]:
    """(runs received, seconds)."""
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        stub = rs_grpc.RunsServiceStub(channel)
        started = time.perf_counter()
        count = 0
        async for message in stub.ExportRuns(request):
            count += len(message.runs)
        return count, time.perf_counter() - started


def cli_export(target: str, fmt: str, flt: str, out: Path) -> tuple[float, int]:
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "agentrun_cli",
            "--runs-target",
            target,
            "runs",
            "export",
            "--filter",
            flt,
            "--format",
            fmt,
            "--output",
            str(out),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started, out.stat().st_size


def slice_filter(db_url: str, count: int) -> str:
    """`start_time < X` selecting about the first `count` runs."""
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT start_time FROM runs ORDER BY start_time, id OFFSET %s LIMIT 1", (max(0, count - 1),)
        ).fetchone()
    if row is None:
        return ""
    return f'start_time <= "{row[0].isoformat()}"'


async def amain(cfg: Config) -> None:
    print(f"export benchmark: {cfg.runs:,} runs; {os.cpu_count()} CPUs, shared machine", flush=True)
    if cfg.reuse_db:
        db_url = await asyncio.to_thread(existing_database, cfg.admin_url, EXPORT_DB)
    else:
        db_url = await asyncio.to_thread(recreate_database, cfg.admin_url, EXPORT_DB)
        await asyncio.to_thread(seed, db_url, cfg.runs, cfg.step_runs)
    with tempfile.TemporaryDirectory(prefix="agentrun-export-") as tmp:
        server = RunsServiceProcess(db_url, Path(tmp))
        try:
            await server.wait_ready()
            header(f"1. ExportRuns BASIC of all {cfg.runs:,} runs (gRPC client counting)")
            with RssSampler(server.process.pid) as sampler:
                count, seconds = await export_count(server.target, rs.ExportRunsRequest())
                time.sleep(0.2)
            rate = count / seconds
            print(
                f"{count:,} runs in {seconds:.1f} s: {rate:,.0f} runs/s "
                f"(goal >= {GOAL_RUNS_S:,.0f}: {verdict(rate >= GOAL_RUNS_S)})",
                flush=True,
            )
            values = [v for _, v in sampler.samples]
            growth = max(values) - values[0]
            print(
                f"{sampler.line()}: grew {growth:.0f} MB (goal flat, < {GOAL_RSS_GROWTH_MB:.0f} MB: "
                f"{verdict(growth < GOAL_RSS_GROWTH_MB)})",
                flush=True,
            )

            with_steps = cfg.step_runs * cfg.cli_runs // cfg.runs
            header(f"2. ExportRuns FULL of the first {cfg.cli_runs:,} runs ({with_steps:,} with steps)")
            flt = slice_filter(db_url, cfg.cli_runs)
            with RssSampler(server.process.pid) as sampler:
                count, seconds = await export_count(
                    server.target, rs.ExportRunsRequest(filter=flt, view=rs.RUN_VIEW_FULL)
                )
            print(f"{count:,} runs in {seconds:.1f} s: {count / seconds:,.0f} runs/s; {sampler.line()}", flush=True)

            header(f"3. agentrun runs export of the first {cfg.cli_runs:,} runs (BASIC) to a file")
            for fmt in ("jsonl", "csv", "parquet"):
                out = Path(tmp) / f"export.{fmt}"
                seconds, size = await asyncio.to_thread(cli_export, server.target, fmt, flt, out)
                print(
                    f"  {fmt:<8} {cfg.cli_runs / seconds:8,.0f} runs/s  ({seconds:.1f} s, {size / 1e6:,.0f} MB)",
                    flush=True,
                )
        finally:
            server.stop()
            if not cfg.keep_db:
                await asyncio.to_thread(drop_database, cfg.admin_url, EXPORT_DB)


def main(argv: list[str] | None = None) -> None:
    asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    main()
