"""Web console benchmark: the runs page and a 200-step run's page at scale, beside the gRPC calls they make.

    .venv/bin/python bench/web.py                  # 1,000,000 runs on PostgreSQL (seeding takes minutes)
    .venv/bin/python bench/web.py --runs 50000     # develop against a smaller database
    .venv/bin/python bench/web.py --reuse-db       # query the database a --keep-db run left (no seeding)
    .venv/bin/python bench/web.py --db mine_web    # a database of your own (others use the server too)

Seeds the runs (bench/runs_store.py's COPY seeding: realistic runs over the last 30 days, a tenth with 40 steps),
records one run of 200 steps and one of 500 with RecordRun, then starts RunsService and the console (`agentrun web`)
as subprocesses and measures, one request in flight, interleaved A, B, A, B:

- GET /                                 (the runs page: 50 newest runs)   beside gRPC ListRuns (same request)
- GET /?agent=..&status=COMPLETED       (quick filters)                   beside gRPC ListRuns (same filter)
- GET / with X-Agentrun-Fragment        (the rows the open page re-asks for every few seconds)
- GET /?filter=status = FAILED&order=duration desc  (a typed filter, slowest first)  beside gRPC ListRuns (same)
- GET /?order=cost desc                 (every run, most expensive first) beside gRPC ListRuns (same)
- GET /?filter=(a OR b)&agent=..&order=total_tokens desc (OR, a quick filter, an order) beside gRPC ListRuns (same)
- GET /?agent=..&order=cost desc        (one agent's runs, most expensive first) beside gRPC ListRuns (same)
- GET /?filter=status = TIMED_OUT&order=cost desc (a rare status, most expensive first) beside gRPC ListRuns (same)
- GET /runs/{200-step run}              (run details: waterfall, steps)  beside gRPC GetRun BASIC + ListRunSteps
- GET /runs/{200-step run}/steps/199    (a step's details in the pane)   beside gRPC ListRunSteps (199 steps)
- GET /runs/{500-step run}              (the same, 500 steps)             beside gRPC GetRun BASIC + ListRunSteps

The goal is p95 < 200 ms for the pages. With --browser (and Chromium installed) it also loads the 500-step run's
page in Chromium and reports its size and how long it takes to be shown (Navigation Timing). Benchmarks print
figures; they are not tests. PostgreSQL: AGENTRUN_BENCH_PG or postgresql://postgres@127.0.0.1:5432/test (a database
`agentrun_bench_web`, or --db, is created, and dropped at the end unless --keep-db).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import grpc
import httpx2 as httpx
from agentrun.runs.v1 import runs_service_pb2 as rs
from agentrun.runs.v1 import runs_service_pb2_grpc as rs_grpc

from agentrun_core.proto_convert import run_to_pb
from bench import runs_store
from bench._util import free_port, header, percentile, verdict
from tests.support.run_factory import make_run

BENCH_DB = "agentrun_bench_web"
GOAL_P95_MS = 200.0
FILTER_AGENT = runs_store.AGENTS[3]


@dataclass(frozen=True)
class Config:
    admin_url: str
    db_name: str
    runs: int
    step_runs: int
    samples: int
    keep_db: bool
    reuse_db: bool
    browser: bool


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", default=os.environ.get("AGENTRUN_BENCH_PG", runs_store.DEFAULT_ADMIN_URL))
    parser.add_argument("--db", default=BENCH_DB, help=f"the database to seed or reuse (default {BENCH_DB})")
    parser.add_argument("--runs", type=int, default=1_000_000, help="runs to seed (default 1,000,000)")
    parser.add_argument("--step-runs", type=int, help="how many of them get 40 steps (default a tenth)")
    parser.add_argument("--samples", type=int, default=300, help="requests per measurement")
    parser.add_argument("--keep-db", action="store_true", help="keep the seeded database")
    parser.add_argument("--reuse-db", action="store_true", help="query the database a --keep-db run left")
    parser.add_argument("--browser", action="store_true", help="also time the 500-step run's page in Chromium")
    args = parser.parse_args(argv)
    return Config(
        admin_url=args.pg,
        db_name=args.db,
        runs=args.runs,
        step_runs=args.step_runs if args.step_runs is not None else args.runs // 10,
        samples=args.samples,
        keep_db=args.keep_db or args.reuse_db,
        reuse_db=args.reuse_db,
        browser=args.browser,
    )


class ConsoleProcess:
    """`agentrun web` in a subprocess, talking to the RunsService under test (authentication off)."""

    def __init__(self, runs_target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "AGENTRUN_AUTH": "off",
            "AGENTRUN_LOG_LEVEL": "WARNING",
            "AGENTRUN_LOG_FORMAT": "text",
            # No ExecutionService runs here: the runs page's agent names (ListAgents) fail fast and are cached.
            "AGENTRUN_EXECUTION_TARGET": f"127.0.0.1:{free_port()}",
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agentrun_cli",
                "--runs-target",
                runs_target,
                "web",
                "--address",
                f"127.0.0.1:{self.port}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
        )

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the console exited with {self.process.returncode}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the console did not start in time")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def record_long_runs(target: str) -> tuple[str, str]:
    """One run of 200 steps and one of 500, recorded through RecordRun; their ids."""
    long_run = run_to_pb(make_run(agent=FILTER_AGENT, user="user-001", model_calls=41, tool_calls=79, seed=200))
    longest = run_to_pb(make_run(agent=FILTER_AGENT, user="user-001", model_calls=101, tool_calls=199, seed=500))
    assert len(long_run.execution_steps) == 200 and len(longest.execution_steps) == 500
    with grpc.insecure_channel(target) as channel:
        stub = rs_grpc.RunsServiceStub(channel)
        for run in (long_run, longest):
            stub.RecordRun(rs.RecordRunRequest(run=run), timeout=30)
    return long_run.id, longest.id


@dataclass
class Measured:
    name: str
    durations: list[float]
    size_bytes: int = 0

    def p(self, q: float) -> float:
        return percentile(self.durations, q) * 1e3

    def line(self) -> str:
        size = f"  {self.size_bytes / 1024:7.1f} KiB" if self.size_bytes else ""
        return (
            f"  {self.name:<44} p50 {self.p(0.5):7.2f} ms  p95 {self.p(0.95):7.2f} ms  p99 {self.p(0.99):7.2f} ms{size}"
        )


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def measure_pairs(
    pairs: list[tuple[str, Callable[[], Any], str, Callable[[], Any]]], samples: int
) -> list[tuple[Measured, Measured]]:
    """Each page beside its gRPC call, interleaved (page, call, page, call...) so machine noise hits both alike."""
    results = [(Measured(page_name, []), Measured(grpc_name, [])) for page_name, _, grpc_name, _ in pairs]
    for _, page, _, rpc in pairs:  # warm-up
        for _ in range(20):
            page()
            rpc()
    for _ in range(samples):
        for (_, page, _, rpc), (page_measured, grpc_measured) in zip(pairs, results, strict=True):
            page_measured.durations.append(timed(page))
            grpc_measured.durations.append(timed(rpc))
    return results


def bench_pages(
    cfg: Config, console: ConsoleProcess, runs_target: str, long_run: str, longest: str
) -> dict[str, float]:
    header(f"Pages vs the gRPC calls behind them ({cfg.samples} each, one in flight, interleaved)")
    client = httpx.Client(base_url=console.url, timeout=30)
    channel = grpc.insecure_channel(runs_target, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    stub = rs_grpc.RunsServiceStub(channel)
    sizes: dict[str, int] = {}

    def get(path: str, name: str, **headers: str) -> Callable[[], Any]:
        def call() -> None:
            response = client.get(path, headers=headers)
            assert response.status_code == 200, (path, response.status_code, response.text[:300])
            sizes[name] = len(response.content)

        return call

    newest = rs.ListRunsRequest(page_size=50, order_by="start_time desc", view=rs.RUN_VIEW_BASIC)
    filtered = rs.ListRunsRequest(
        page_size=50,
        order_by="start_time desc",
        filter=f'agent_name = "{FILTER_AGENT}" AND status = COMPLETED',
        view=rs.RUN_VIEW_BASIC,
    )
    slowest_failed = rs.ListRunsRequest(
        page_size=50, order_by="duration desc", filter="status = FAILED", view=rs.RUN_VIEW_BASIC
    )
    dearest = rs.ListRunsRequest(page_size=50, order_by="cost desc", view=rs.RUN_VIEW_BASIC)
    typed_or = "status = FAILED OR total_tokens > 20000"
    combined = rs.ListRunsRequest(
        page_size=50,
        order_by="total_tokens desc",
        filter=f'({typed_or}) AND agent_name = "{FILTER_AGENT}"',
        view=rs.RUN_VIEW_BASIC,
    )
    agent_dearest = rs.ListRunsRequest(
        page_size=50, order_by="cost desc", filter=f'agent_name = "{FILTER_AGENT}"', view=rs.RUN_VIEW_BASIC
    )
    timed_out_dearest = rs.ListRunsRequest(
        page_size=50, order_by="cost desc", filter="status = TIMED_OUT", view=rs.RUN_VIEW_BASIC
    )

    # What the run page asks for: the BASIC view with the run's sub-agent runs (none here: one empty index range),
    # then its steps page by page (1,000 a page: one page here).
    def run_page_calls(run_id: str) -> Callable[[], Any]:
        basic = rs.GetRunRequest(run_id=run_id, view=rs.RUN_VIEW_BASIC, include_descendants=True)
        steps = rs.ListRunStepsRequest(run_id=run_id, page_size=1000)
        return lambda: (stub.GetRun(basic), stub.ListRunSteps(steps))

    step_199 = rs.ListRunStepsRequest(run_id=long_run, page_size=199)
    pairs = [
        ("GET / (runs page, 50 newest)", get("/", "runs"), "gRPC ListRuns (50 newest)", lambda: stub.ListRuns(newest)),
        (
            "GET /?agent&status (quick filters)",
            get(f"/?agent={FILTER_AGENT}&status=COMPLETED", "filtered"),
            "gRPC ListRuns (agent + status)",
            lambda: stub.ListRuns(filtered),
        ),
        (
            "GET / rows fragment (the page's refresh)",
            get("/", "rows", **{"x-agentrun-fragment": "1"}),
            "gRPC ListRuns (50 newest)",
            lambda: stub.ListRuns(newest),
        ),
        (
            "GET /?filter=status=FAILED&order=duration desc",
            get("/?filter=status+%3D+FAILED&order=duration+desc", "slowest_failed"),
            "gRPC ListRuns (FAILED, duration desc)",
            lambda: stub.ListRuns(slowest_failed),
        ),
        (
            "GET /?order=cost desc (all runs)",
            get("/?order=cost+desc", "dearest"),
            "gRPC ListRuns (cost desc)",
            lambda: stub.ListRuns(dearest),
        ),
        (
            "GET /?filter=(OR)&agent&order=tokens desc",
            get(
                "/?" + urlencode({"filter": typed_or, "agent": FILTER_AGENT, "order": "total_tokens desc"}),
                "combined",
            ),
            "gRPC ListRuns ((OR) AND agent, tokens)",
            lambda: stub.ListRuns(combined),
        ),
        (
            "GET /?agent&order=cost desc",
            get(f"/?agent={FILTER_AGENT}&order=cost+desc", "agent_dearest"),
            "gRPC ListRuns (agent, cost desc)",
            lambda: stub.ListRuns(agent_dearest),
        ),
        (
            "GET /?filter=status=TIMED_OUT&order=cost desc",
            get("/?filter=status+%3D+TIMED_OUT&order=cost+desc", "timed_out_dearest"),
            "gRPC ListRuns (TIMED_OUT, cost desc)",
            lambda: stub.ListRuns(timed_out_dearest),
        ),
        (
            "GET /runs/{id} (200 steps)",
            get(f"/runs/{long_run}", "run"),
            "gRPC GetRun BASIC + ListRunSteps (200)",
            run_page_calls(long_run),
        ),
        (
            "GET /runs/{id}/steps/199 (the pane)",
            get(f"/runs/{long_run}/steps/199", "step", **{"x-agentrun-fragment": "1"}),
            "gRPC ListRunSteps (199 steps)",
            lambda: stub.ListRunSteps(step_199),
        ),
        (
            "GET /runs/{id} (500 steps)",
            get(f"/runs/{longest}", "longest"),
            "gRPC GetRun BASIC + ListRunSteps (500)",
            run_page_calls(longest),
        ),
    ]
    out: dict[str, float] = {}
    try:
        results = measure_pairs(pairs, cfg.samples)
    finally:
        client.close()
        channel.close()
    keys = (
        "runs",
        "filtered",
        "rows",
        "slowest_failed",
        "dearest",
        "combined",
        "agent_dearest",
        "timed_out_dearest",
        "run",
        "step",
        "longest",
    )
    for (page, rpc), key in zip(results, keys, strict=True):
        page.size_bytes = sizes[key]
        ok = page.p(0.95) < GOAL_P95_MS
        print(page.line(), flush=True)
        print(rpc.line(), flush=True)
        extra = page.p(0.95) - rpc.p(0.95)
        print(
            f"    -> page p95 {page.p(0.95):.1f} ms = gRPC p95 {rpc.p(0.95):.1f} ms + {extra:.1f} ms "
            f"(ratio {page.p(0.5) / rpc.p(0.5):.1f}x at p50); goal p95 < {GOAL_P95_MS:.0f} ms: {verdict(ok)}",
            flush=True,
        )
        out[f"{key}_page_p95_ms"] = page.p(0.95)
        out[f"{key}_grpc_p95_ms"] = rpc.p(0.95)
    return out


def bench_browser(console: ConsoleProcess, longest: str, loads: int = 5) -> None:
    header("The 500-step run's page in Chromium (Navigation Timing, after one warm-up load)")
    chromium = "/usr/bin/chromium"
    if not os.access(chromium, os.X_OK):
        print(f"  skipped: no Chromium at {chromium} (apt-get install -y chromium)")
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        url = f"{console.url}/runs/{longest}"
        page.goto(url)
        timings = []
        for _ in range(loads):
            page.goto(url)
            timings.append(
                page.evaluate(
                    "(() => { const n = performance.getEntriesByType('navigation')[0];"
                    " return [n.responseEnd - n.startTime, n.domContentLoadedEventEnd - n.startTime,"
                    " n.loadEventEnd - n.startTime, n.transferSize, n.decodedBodySize]; })()"
                )
            )
        # In the page: from the click on the last tool call's bar to its details in the pane (two steps, fetched).
        pane_ms = page.evaluate(
            """async () => {
                const bar = [...document.querySelectorAll('#wf-rows .wf-row.wf-tool .wf-bar')].pop();
                const started = performance.now();
                bar.click();
                while (!document.querySelector('#pane-body article.detail')) {
                    await new Promise((resolve) => setTimeout(resolve, 2));
                }
                return performance.now() - started;
            }"""
        )
        rows = page.locator("#step-rows tr").count()
        bars = page.locator("#wf-rows .wf-row").count()
        browser.close()
    median = sorted(timings, key=lambda t: t[2])[len(timings) // 2]
    print(f"  {rows} step rows, {bars} waterfall bars; HTML {median[4] / 1024:.1f} KiB")
    response, ready, loaded = median[0], median[1], median[2]
    print(
        f"  median of {loads}: response {response:.0f} ms, DOMContentLoaded {ready:.0f} ms, load {loaded:.0f} ms;"
        f" a tool call's details are in the pane {pane_ms:.0f} ms after its bar is clicked (fetched on first use)"
    )


async def _prepare(cfg: Config) -> str:
    prepare = runs_store.existing_database if cfg.reuse_db else runs_store.recreate_database
    db_url = await asyncio.to_thread(prepare, cfg.admin_url, cfg.db_name)
    if not cfg.reuse_db:
        await asyncio.to_thread(runs_store.seed, db_url, cfg.runs, cfg.step_runs)
    return db_url


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    print(f"web console benchmark; {os.cpu_count()} CPUs, shared machine", flush=True)
    started = time.perf_counter()
    db_url = asyncio.run(_prepare(cfg))
    try:
        with tempfile.TemporaryDirectory(prefix="agentrun-bench-web-") as tmp:
            server = runs_store.RunsServiceProcess(db_url, Path(tmp))
            console: ConsoleProcess | None = None
            try:
                asyncio.run(server.wait_ready())
                if cfg.reuse_db:
                    with grpc.insecure_channel(server.target) as channel:
                        total = len(rs_grpc.RunsServiceStub(channel).ListRuns(rs.ListRunsRequest(page_size=1)).runs)
                    print(f"reusing {cfg.db_name} ({'empty' if not total else 'seeded'})", flush=True)
                long_run, longest = record_long_runs(server.target)
                console = ConsoleProcess(server.target)
                console.wait_ready()
                bench_pages(cfg, console, server.target, long_run, longest)
                if cfg.browser:
                    bench_browser(console, longest)
            finally:
                if console is not None:
                    console.stop()
                server.stop()
    finally:
        if not cfg.keep_db:
            runs_store.drop_database(cfg.admin_url, cfg.db_name)
    print(f"\ndone in {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
