"""Streams ExportRuns into a sink, checkpointing the cursor so an interrupted export resumes where it stopped."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from agentrun.runs.v1 import runs_service_pb2 as runs_pb2
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from agentrun_cli.client import RunsClient
from agentrun_cli.errors import EXIT_INTERRUPTED, EXIT_USAGE, CliError, ServiceError
from agentrun_cli.export.sinks import CsvSink, JsonlSink, ParquetSink, Sink, open_at
from agentrun_cli.export.state import ExportState, stage_path, state_path
from agentrun_cli.settings import ExportSettings
from agentrun_core.settings import SettingsError

FORMATS = ("jsonl", "csv", "parquet")
VIEWS = ("basic", "full")


@dataclass(frozen=True)
class ExportJob:
    state: ExportState
    # None: write to stdout (not resumable).
    output: Path | None
    show_progress: bool


def _checkpoint_interval() -> float:
    try:
        return ExportSettings.from_env().checkpoint_s
    except SettingsError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def _open_sink(job: ExportJob) -> Sink:
    state, output = job.state, job.output
    full = state.view == "full"
    if output is None:
        stdout = sys.stdout.buffer
        return CsvSink(stdout, 0, False, full) if state.format == "csv" else JsonlSink(stdout, 0, False)
    try:
        if state.format == "parquet":
            stage = stage_path(output)
            return ParquetSink(open_at(stage, state.offset), state.offset, stage, output, full)
        file = open_at(output, state.offset)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot write {output}: {exc}") from None
    if state.format == "csv":
        return CsvSink(file, state.offset, True, full)
    return JsonlSink(file, state.offset, True)


class _Checkpoints:
    """The last consistent point (data offset, cursor, runs), set in one assignment after a whole message was
    written, so an interruption anywhere never pairs an offset with the cursor of another message."""

    def __init__(self, job: ExportJob, sink: Sink) -> None:
        self._job = job
        self._sink = sink
        self._every = _checkpoint_interval()
        self._last = time.monotonic()
        self.committed = (sink.complete_offset, job.state.cursor, job.state.runs)

    def save(self) -> None:
        state = self._job.state
        state.offset, state.cursor, state.runs = self.committed
        if self._job.output is None:
            return
        self._sink.sync()  # everything written so far, the committed prefix included
        state.save(self._job.output)
        self._last = time.monotonic()

    def maybe(self) -> None:
        if self._job.output is not None and time.monotonic() - self._last >= self._every:
            self.save()


@contextmanager
def _progress(job: ExportJob) -> Iterator[Progress | None]:
    if not job.show_progress:
        yield None
        return
    progress = Progress(
        TextColumn("exporting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("runs · {task.fields[rate]:,.0f}/s"),
        TimeRemainingColumn(),
        console=Console(file=sys.stderr),
        transient=True,
    )
    with progress:
        yield progress


def _resume_hint(job: ExportJob, error: ServiceError | None = None) -> str:
    if not job.output:
        return ""
    if error is not None and _cursor_refused(error):
        # --resume would send the same cursor again: say how to start over instead.
        return (
            f"this export cannot go on from its cursor: delete {job.output} and {state_path(job.output)} "
            "to start it over"
        )
    return f"continue with: agentrun runs export --output {job.output} --resume"


def _cursor_refused(error: ServiceError) -> bool:
    """RunsService refused the export's resume cursor (signed by another secret, altered, or for another query)."""
    return error.code is grpc.StatusCode.INVALID_ARGUMENT and error.status_details.startswith("resume_cursor")


def run_export(client: RunsClient, job: ExportJob) -> int:
    """Exports into the job's output; returns the runs written in total (resumed ones included)."""
    state = job.state
    sink = _open_sink(job)
    checkpoints = _Checkpoints(job, sink)
    checkpoints.save()  # the state exists from the first byte on
    if not state.stream_complete:
        request = runs_pb2.ExportRunsRequest(
            filter=state.filter,
            view=runs_pb2.RUN_VIEW_FULL if state.view == "full" else runs_pb2.RUN_VIEW_BASIC,
            resume_cursor=state.cursor,
            count_total=job.show_progress,
        )
        try:
            _stream(client, request, job, sink, checkpoints)
        except KeyboardInterrupt:
            checkpoints.save()
            sink.close()
            hint = _resume_hint(job)
            done = f"interrupted after {state.runs} runs" + (f"; {hint}" if hint else "")
            raise CliError(done, EXIT_INTERRUPTED) from None
        except ServiceError as exc:
            checkpoints.save()
            sink.close()
            hint = _resume_hint(job, exc)
            where = f" (after {state.runs} runs; {hint})" if hint else ""
            raise CliError(exc.message + where, exc.exit_code) from None
        state.stream_complete = True
        checkpoints.save()
    sink.finish()
    if job.output is not None:
        ExportState.remove(job.output)
    return state.runs


def _stream(
    client: RunsClient, request: runs_pb2.ExportRunsRequest, job: ExportJob, sink: Sink, checkpoints: _Checkpoints
) -> None:
    state = job.state
    started, at_start = time.monotonic(), state.runs
    with _progress(job) as progress:
        task = None
        for message in client.export(request):
            if progress is not None and task is None:
                task = progress.add_task("export", total=state.runs + message.total_count, rate=0.0)
                progress.update(task, completed=state.runs)
            sink.write(message.runs)
            written = checkpoints.committed[2] + len(message.runs)
            checkpoints.committed = (sink.complete_offset, message.resume_cursor, written)
            checkpoints.maybe()
            if progress is not None and task is not None:
                rate = (written - at_start) / max(time.monotonic() - started, 1e-6)
                progress.update(task, completed=written, rate=rate)
    state.offset, state.cursor, state.runs = checkpoints.committed
