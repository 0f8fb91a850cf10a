"""`agentrun runs export` and `agentrun runs delete` as a user runs them (the CLI in its own process) against a real
RunsService on SQLite and PostgreSQL: formats, resuming a killed export without duplicates or gaps, confirmation."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import pty
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from agentrun.runs.v1 import run_pb2
from google.protobuf import json_format

from agentrun_cli.export.records import COLUMNS, FULL_COLUMNS
from agentrun_core.domain import Run, RunStatus
from agentrun_core.proto_convert import run_to_pb
from tests.runs_service.api.conftest import RunsClient, start_runs_client
from tests.runs_service.api.test_delete_runs import record_all, stored_ids
from tests.support.run_factory import make_run

T0 = datetime(2026, 8, 1, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Done:
    code: int
    stdout: bytes
    stderr: str


async def cli(runs: RunsClient, *args: str, env: dict[str, str] | None = None, stdin: bytes = b"") -> Done:
    process = await start_cli(runs, *args, env=env)
    stdout, stderr = await process.communicate(stdin)
    assert process.returncode is not None
    return Done(process.returncode, stdout, stderr.decode())


async def start_cli(runs: RunsClient, *args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentrun_cli",
        "--runs-target",
        runs.address,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "AGENTRUN_TOKEN": "", "AGENTRUN_TLS_CA": "", **(env or {})},
        cwd=REPO,
    )


def fleet(count: int, **kw: object) -> list[Run]:
    return [
        make_run(
            agent=f"agent-{i % 2}",
            start_time=T0 + timedelta(seconds=i // 2),
            status=RunStatus.FAILED if i % 5 == 0 else RunStatus.COMPLETED,
            seed=i,
            **kw,  # type: ignore[arg-type]
        )
        for i in range(count)
    ]


def ordered(runs_: list[Run], full: bool = False) -> list[run_pb2.Run]:
    result = []
    for run in sorted(runs_, key=lambda r: (r.start_time, r.id)):
        message = run_to_pb(run)
        if not full:
            message.ClearField("execution_steps")
            message.ClearField("tool_calls")
        result.append(message)
    return result


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def parse_jsonl(data: bytes) -> list[run_pb2.Run]:
    return [json_format.Parse(line, run_pb2.Run()) for line in data.decode().splitlines()]


@pytest.fixture
async def stocked(runs: RunsClient) -> AsyncIterator[tuple[RunsClient, list[Run]]]:
    everything = fleet(30)
    await record_all(runs.stub, everything)
    yield runs, everything


async def test_jsonl_to_a_file_and_to_stdout(stocked: tuple[RunsClient, list[Run]], tmp_path: Path) -> None:
    runs, everything = stocked
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "runs.jsonl"
    done = await cli(runs, "runs", "export", "--output", str(out))
    assert done.code == 0, done.stderr
    assert parse_jsonl(out.read_bytes()) == ordered(everything)
    assert done.stderr.strip() == f"exported 30 runs to {out}"  # no progress bar when stderr is not a terminal
    assert files_in(out.parent) == ["runs.jsonl"]  # no state left behind

    piped = await cli(runs, "runs", "export", "--agent", "agent-1", "--view", "full")
    assert piped.code == 0, piped.stderr
    assert parse_jsonl(piped.stdout) == ordered([r for r in everything if r.agent_name == "agent-1"], full=True)


async def test_csv_has_the_documented_columns(stocked: tuple[RunsClient, list[Run]], tmp_path: Path) -> None:
    runs, everything = stocked
    out = tmp_path / "runs.csv"
    done = await cli(runs, "runs", "export", "--format", "csv", "--filter", "status = FAILED", "-o", str(out))
    assert done.code == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0]) == [name for name, _ in COLUMNS]
    failed = [r for r in sorted(everything, key=lambda r: (r.start_time, r.id)) if r.status is RunStatus.FAILED]
    assert [row["id"] for row in rows] == [r.id for r in failed]
    first, run = rows[0], failed[0]
    assert first["status"] == "FAILED" and first["error_reason"] == "MODEL_RATE_LIMITED"
    assert first["start_time"] == run.start_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert run.duration is not None and float(first["duration_s"]) == pytest.approx(run.duration.total_seconds())
    assert int(first["total_tokens"]) == run.token_usage.total_tokens
    assert run.cost is not None and Decimal(first["cost"]) == run.cost.amount
    assert json.loads(first["labels"]) == run.labels and json.loads(first["tools_used"]) == list(run.tools_used)
    assert int(first["tool_call_count"]) == len(run.tool_calls) > 0
    assert first["queue_duration_s"] == "" and first["total_tokens_with_descendants"] == ""
    assert 0.0 <= float(first["max_context_window_used"]) <= 1.0


async def test_parquet_with_typed_columns(stocked: tuple[RunsClient, list[Run]], tmp_path: Path) -> None:
    runs, everything = stocked
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "runs.parquet"
    done = await cli(runs, "runs", "export", "--format", "parquet", "--view", "full", "-o", str(out))
    assert done.code == 0, done.stderr
    table = pq.read_table(out)
    assert table.column_names == [name for name, _ in COLUMNS + FULL_COLUMNS]
    assert str(table.schema.field("start_time").type) == "timestamp[us, tz=UTC]"
    assert str(table.schema.field("cost").type) == "decimal128(20, 10)"
    rows = table.to_pylist()
    expected = ordered(everything, full=True)
    assert [row["id"] for row in rows] == [r.id for r in expected]
    assert rows[0]["start_time"] == min(r.start_time for r in everything)
    assert dict(rows[3]["labels"]) == dict(expected[3].labels)
    assert rows[3]["tool_call_count"] == len(expected[3].tool_calls) > 0
    assert str(table.schema.field("tool_call_count").type) == "int64"
    assert rows[3]["queue_duration_s"] is None and rows[3]["cost_with_descendants"] is None
    steps = json.loads(rows[3]["execution_steps"])
    assert [json_format.ParseDict(s, run_pb2.ExecutionStep()) for s in steps] == list(expected[3].execution_steps)
    assert files_in(out.parent) == ["runs.parquet"]  # staging and state removed

    bad = await cli(runs, "runs", "export", "--format", "parquet")
    assert bad.code == 2 and "--output" in bad.stderr


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
async def test_a_killed_export_resumes_without_duplicates_or_gaps(runs: RunsClient, tmp_path: Path, fmt: str) -> None:
    everything = fleet(1_200, model_calls=2, tool_calls=1)
    for i in range(0, len(everything), 400):
        await record_all(runs.stub, everything[i : i + 400])
    out = tmp_path / f"runs.{fmt}"
    state_file = tmp_path / f"runs.{fmt}.export-state.json"
    fast_checkpoints = {"AGENTRUN_EXPORT_CHECKPOINT_S": "0"}
    process = await start_cli(
        runs, "runs", "export", "--view", "full", "--format", fmt, "-o", str(out), env=fast_checkpoints
    )
    # FULL exports go 20 runs per batch: wait until some, not all, are checkpointed, then kill -9.
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline and process.returncode is None, "the export ended before it was killed"
        try:
            recorded = json.loads(state_file.read_text())["runs"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            recorded = 0
        if 100 <= recorded <= 900:
            break
        await asyncio.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    await process.wait()
    state = json.loads(state_file.read_text())
    assert 100 <= state["runs"] < len(everything)
    # A message half-written when the process died sits past the checkpoint: resuming must cut it off.
    data_file = out if fmt != "parquet" else tmp_path / f"runs.{fmt}.partial"
    with open(data_file, "ab") as torn:
        torn.write(b'{"id": "half-written run')

    resumed = await cli(runs, "runs", "export", "-o", str(out), "--resume", env=fast_checkpoints)
    assert resumed.code == 0, resumed.stderr
    assert f"exported {len(everything)} runs" in resumed.stderr
    expected = ordered(everything, full=True)
    if fmt == "jsonl":
        assert parse_jsonl(out.read_bytes()) == expected
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out.read_text())))
        assert [row["id"] for row in rows] == [r.id for r in expected]
        assert [json.loads(row["tool_calls"])[0]["id"] for row in rows] == [r.tool_calls[0].id for r in expected]
    else:
        assert pq.read_table(out).column("id").to_pylist() == [r.id for r in expected]
    assert not state_file.exists()


async def test_resume_refuses_what_it_cannot_continue(stocked: tuple[RunsClient, list[Run]], tmp_path: Path) -> None:
    runs, _ = stocked
    out = tmp_path / "runs.jsonl"
    nothing = await cli(runs, "runs", "export", "-o", str(out), "--resume")
    assert nothing.code == 2 and "nothing to resume" in nothing.stderr
    state = {"filter": "", "view": "basic", "format": "jsonl", "cursor": "", "offset": 0, "runs": 0}
    state_file = tmp_path / "runs.jsonl.export-state.json"
    # A state written before the csv/parquet columns grew (version 1) cannot be continued with the new columns.
    state_file.write_text(json.dumps({**state, "stream_complete": False, "version": 1}))
    out.write_bytes(b"")
    older = await cli(runs, "runs", "export", "-o", str(out), "--resume")
    assert older.code == 2 and "start over" in older.stderr
    state_file.write_text(json.dumps({**state, "stream_complete": False, "version": 2}))
    fresh = await cli(runs, "runs", "export", "-o", str(out))
    assert fresh.code == 2 and "add --resume" in fresh.stderr
    other = await cli(runs, "runs", "export", "-o", str(out), "--resume", "--filter", "status = FAILED")
    assert other.code == 2 and "--filter" in other.stderr and "differs" in other.stderr
    # A cursor RunsService refuses (another secret signed it, or it was altered): --resume would send it again.
    state_file.write_text(json.dumps({**state, "cursor": "bm90IGEgY3Vyc29y", "stream_complete": False, "version": 2}))
    refused = await cli(runs, "runs", "export", "-o", str(out), "--resume")
    assert refused.code == 2 and "resume_cursor" in refused.stderr
    assert f"delete {out} and {state_file} to start it over" in refused.stderr and "--resume" not in refused.stderr
    state_file.write_text(json.dumps({**state, "stream_complete": False, "version": 2}))
    ok = await cli(runs, "runs", "export", "-o", str(out), "--resume")
    assert ok.code == 0 and len(out.read_bytes().splitlines()) == 30


async def test_delete_counts_asks_and_deletes(stocked: tuple[RunsClient, list[Run]]) -> None:
    runs, everything = stocked
    failed = {r.id for r in everything if r.status is RunStatus.FAILED}

    unnamed = await cli(runs, "runs", "delete")
    assert unnamed.code == 2 and "--all" in unnamed.stderr
    dry = await cli(runs, "runs", "delete", "--status", "failed", "--dry-run")
    assert dry.code == 0 and dry.stdout.decode().startswith(f"{len(failed)} runs match")
    unconfirmed = await cli(runs, "runs", "delete", "--status", "failed")  # stdin is not a terminal
    assert unconfirmed.code == 2 and "--yes" in unconfirmed.stderr
    assert await stored_ids(runs.stub) == {r.id for r in everything}

    deleted = await cli(runs, "runs", "delete", "--filter", "status = FAILED", "--yes", "--json")
    assert deleted.code == 0, deleted.stderr
    assert json.loads(deleted.stdout) == {
        "runCount": len(failed),
        "dryRun": False,
        "sampleRunIds": [],
        "unfinishedCount": 0,
    }
    assert await stored_ids(runs.stub) == {r.id for r in everything} - failed

    stale = make_run(status=RunStatus.RUNNING, agent="lost")
    await record_all(runs.stub, [stale])
    everything_left = await cli(runs, "runs", "delete", "--all", "--yes")
    assert everything_left.code == 0
    assert everything_left.stdout.decode().strip() == (
        f"deleted {30 - len(failed)} runs; 1 matching runs have not finished and are kept "
        "(--include-unfinished deletes them too)"
    )
    assert await stored_ids(runs.stub) == {stale.id}
    unfinished = await cli(runs, "runs", "delete", "--agent", "lost", "--include-unfinished", "--yes")
    assert unfinished.code == 0 and unfinished.stdout.decode().strip() == "deleted 1 runs"
    assert await stored_ids(runs.stub) == set()
    bad = await cli(runs, "runs", "delete", "--filter", "nonsense = 1", "--yes")
    assert bad.code == 2 and "INVALID_ARGUMENT" in bad.stderr


async def test_export_over_a_down_service_says_how_to_resume(tmp_path: Path, db_url: str) -> None:
    client = await start_runs_client(db_url, tmp_path / "data")
    await record_all(client.stub, fleet(5))
    await client.channel.close()
    await client.server.stop(0)
    out = tmp_path / "runs.jsonl"
    done = await cli(client, "runs", "export", "-o", str(out))
    assert done.code == 1 and "UNAVAILABLE" in done.stderr and "--resume" in done.stderr
    assert (tmp_path / "runs.jsonl.export-state.json").exists()


async def test_a_progress_bar_on_a_terminal(stocked: tuple[RunsClient, list[Run]], tmp_path: Path) -> None:
    runs, _ = stocked
    primary, secondary = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentrun_cli",
        "--runs-target",
        runs.address,
        "runs",
        "export",
        "-o",
        str(tmp_path / "runs.jsonl"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=secondary,
        env={**os.environ, "AGENTRUN_TOKEN": "", "COLUMNS": "100", "TERM": "xterm"},
        cwd=REPO,
    )
    os.close(secondary)
    assert await process.wait() == 0
    shown = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        shown += chunk
    os.close(primary)
    text = shown.decode(errors="replace")
    assert "exporting" in text and "30/30" in text, text
    assert "exported 30 runs" in text


async def test_an_export_matching_nothing_writes_empty_files(
    stocked: tuple[RunsClient, list[Run]], tmp_path: Path
) -> None:
    runs, _ = stocked
    for fmt in ("jsonl", "csv", "parquet"):
        out = tmp_path / f"none.{fmt}"
        done = await cli(runs, "runs", "export", "--agent", "nobody", "--format", fmt, "-o", str(out))
        assert done.code == 0 and "exported 0 runs" in done.stderr, done.stderr
        if fmt == "jsonl":
            assert out.read_bytes() == b""
        elif fmt == "csv":
            assert out.read_text().splitlines() == [",".join(name for name, _ in COLUMNS)]
        else:
            table = pq.read_table(out)
            assert table.num_rows == 0 and table.column_names == [name for name, _ in COLUMNS]
