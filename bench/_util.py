"""Small helpers shared by the benchmark scripts (percentiles, printing, a free port, the repo on sys.path)."""

from __future__ import annotations

import glob
import math
import os
import socket
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ensure_repo_on_path() -> None:
    """`python bench/x.py` puts bench/ on sys.path, not the repo: add it so `tests.support` and `bench` import."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of `values`; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def summary_ms(values_s: Sequence[float]) -> str:
    """'p50 x ms, p99 y ms (n=N)' for durations in seconds."""
    return (
        f"p50 {percentile(values_s, 0.5) * 1e3:7.2f} ms  p99 {percentile(values_s, 0.99) * 1e3:7.2f} ms  "
        f"(n={len(values_s)})"
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def header(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc); 0.0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def processes_cpu_s(command_name: str) -> float:
    """CPU seconds used so far by every live process whose name starts with `command_name` (e.g. "postgres": the
    server's backends, on a machine where it runs locally)."""
    total = 0.0
    for comm in glob.glob("/proc/[0-9]*/comm"):
        try:
            with open(comm) as name:
                if name.read().startswith(command_name):
                    total += process_cpu_s(int(comm.split("/")[2]))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def process_tree_cpu_s(pid: int) -> float:
    """CPU seconds used so far by a process and its live descendants (a replica and its stdio MCP servers)."""
    children: dict[int, list[int]] = {}
    for stat_path in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat_path) as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat_path.split("/")[2]))
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        total += process_cpu_s(current)
        pending.extend(children.get(current, []))
    return total
