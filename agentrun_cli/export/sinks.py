"""Where exported runs are written, one sink per format, appending to a file that can be cut back to a checkpoint.

A sink appends whole messages (a batch of runs) and knows the byte offset after the last whole message written
(`complete_offset`); `sync` makes everything up to there durable. Resuming truncates the file to the offset of the
last checkpoint, so a run half-written when the process died is written again, once.

jsonl and csv write the output itself (and may write to stdout when not resumable). parquet cannot be appended to
once closed, and a killed writer leaves a file without its footer, so it stages the runs as length-delimited
protobuf messages in `<output>.partial` and converts them to `<output>` in bounded row groups when the stream ends.
"""

from __future__ import annotations

import csv
import io
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from agentrun.runs.v1 import run_pb2

from agentrun_cli.export.records import columns, csv_value, jsonl_line

_BUFFER = 1 << 20
_LENGTH = struct.Struct(">I")
PARQUET_ROW_GROUP = 10_000


class Sink(Protocol):
    @property
    def complete_offset(self) -> int: ...

    def write(self, runs: Sequence[run_pb2.Run]) -> None: ...

    def sync(self) -> int:
        """Flushes and fsyncs what was written; returns complete_offset."""
        ...

    def finish(self) -> None:
        """The stream ended: complete the output (parquet converts its staging file) and close."""
        ...

    def close(self) -> None: ...


def open_at(path: Path, offset: int) -> IO[bytes]:
    """`path` opened for appending at `offset` (created when new, truncated to `offset` when longer)."""
    file = open(path, "r+b" if path.exists() else "w+b", buffering=_BUFFER)  # noqa: SIM115 - the sink owns it
    size = file.seek(0, os.SEEK_END)
    if size < offset:
        file.close()
        raise ValueError(f"{path} holds {size} bytes, less than the {offset} bytes its export state recorded")
    file.truncate(offset)
    file.seek(offset)
    return file


class _FileSink:
    def __init__(self, file: IO[bytes], offset: int, durable: bool) -> None:
        self._file = file
        self._offset = offset
        self._durable = durable

    @property
    def complete_offset(self) -> int:
        return self._offset

    def _append(self, data: bytes) -> None:
        self._file.write(data)
        self._offset += len(data)

    def sync(self) -> int:
        self._file.flush()
        if self._durable:
            os.fsync(self._file.fileno())
        return self._offset

    def finish(self) -> None:
        self.sync()
        self.close()

    def close(self) -> None:
        if self._durable:
            self._file.close()
        else:
            self._file.flush()


class JsonlSink(_FileSink):
    def write(self, runs: Sequence[run_pb2.Run]) -> None:
        self._append(b"".join(jsonl_line(run) for run in runs))


class CsvSink(_FileSink):
    def __init__(self, file: IO[bytes], offset: int, durable: bool, full: bool) -> None:
        super().__init__(file, offset, durable)
        self._columns = columns(full)
        if offset == 0:
            self._append(self._rows([[name for name, _ in self._columns]]))

    @staticmethod
    def _rows(rows: list[list[str]]) -> bytes:
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        return text.getvalue().encode()

    def write(self, runs: Sequence[run_pb2.Run]) -> None:
        self._append(self._rows([[csv_value(get(run)) for _, get in self._columns] for run in runs]))


class ParquetSink(_FileSink):
    """Stages runs in `stage` (length-delimited Run messages); `finish` writes `output` from it."""

    def __init__(self, stage: IO[bytes], offset: int, stage_path: Path, output: Path, full: bool) -> None:
        super().__init__(stage, offset, durable=True)
        self._stage_path = stage_path
        self._output = output
        self._full = full

    def write(self, runs: Sequence[run_pb2.Run]) -> None:
        parts = []
        for run in runs:
            data = run.SerializeToString()
            parts.append(_LENGTH.pack(len(data)))
            parts.append(data)
        self._append(b"".join(parts))

    def finish(self) -> None:
        self.sync()
        self.close()
        convert_stage(self._stage_path, self._output, self._full)
        self._stage_path.unlink()


def staged_runs(path: Path) -> Iterator[run_pb2.Run]:
    with open(path, "rb", buffering=_BUFFER) as stage:
        while header := stage.read(_LENGTH.size):
            (length,) = _LENGTH.unpack(header)
            yield run_pb2.Run.FromString(stage.read(length))


def parquet_schema(full: bool) -> Any:
    import pyarrow as pa

    types = {
        "start_time": pa.timestamp("us", tz="UTC"),
        "end_time": pa.timestamp("us", tz="UTC"),
        "duration_s": pa.float64(),
        "cost": pa.decimal128(20, 10),
        "cost_with_descendants": pa.decimal128(20, 10),
        "queue_duration_s": pa.float64(),
        "max_context_window_used": pa.float64(),
        "tools_used": pa.list_(pa.string()),
        "labels": pa.map_(pa.string(), pa.string()),
        "variables": pa.map_(pa.string(), pa.string()),
        **{name: pa.int64() for name in ("input_tokens", "output_tokens", "total_tokens", "cached_tokens")},
        **{name: pa.int64() for name in ("thinking_tokens", "tool_use_prompt_tokens", "steps_taken")},
        **{name: pa.int64() for name in ("depth", "forked_from_sequence", "tool_call_count")},
        "total_tokens_with_descendants": pa.int64(),
    }
    return pa.schema([(name, types.get(name, pa.string())) for name, _ in columns(full)])


def convert_stage(stage: Path, output: Path, full: bool) -> None:
    """Writes `output` (atomically: a temporary file renamed) from the staged runs, PARQUET_ROW_GROUP at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema(full)
    getters = columns(full)
    temporary = output.with_name(output.name + ".tmp")
    with pq.ParquetWriter(temporary, schema, compression="zstd") as writer:
        batch: list[run_pb2.Run] = []

        def flush() -> None:
            data = {name: [_parquet_value(get(run)) for run in batch] for name, get in getters}
            writer.write_table(pa.Table.from_pydict(data, schema=schema))
            batch.clear()

        for run in staged_runs(stage):
            batch.append(run)
            if len(batch) >= PARQUET_ROW_GROUP:
                flush()
        if batch:
            flush()
    with open(temporary, "rb") as written:
        os.fsync(written.fileno())
    os.replace(temporary, output)


def _parquet_value(value: Any) -> Any:
    if isinstance(value, dict):
        return list(value.items())
    return value
