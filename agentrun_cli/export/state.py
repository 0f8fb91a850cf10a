"""The export's sidecar file, `<output>.export-state.json`: what a killed export needs to resume without duplicates or
gaps.

It records the request (filter, view, format), the cursor after the last run written, the byte offset of the data
file at that point and the runs written so far. It is replaced atomically (temporary file, fsync, rename) only after
the data file was fsynced up to that offset, so at any moment it describes a durable prefix of the data; whatever
follows that offset in the data file (a message half-written when the process died) is cut off on resume. It is
deleted when the export completes.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

STATE_SUFFIX = ".export-state.json"
STAGE_SUFFIX = ".partial"
# 2: csv/parquet gained tool_call_count, queue_duration_s, max_context_window_used and the descendants' totals
_VERSION = 2


class StateError(ValueError):
    """The state file is missing or unreadable; the message says what to do."""


def state_path(output: Path) -> Path:
    return output.with_name(output.name + STATE_SUFFIX)


def stage_path(output: Path) -> Path:
    return output.with_name(output.name + STAGE_SUFFIX)


@dataclass
class ExportState:
    filter: str
    view: str
    format: str
    cursor: str = ""
    # Bytes of the data file (the output, or for parquet its staging file) holding complete runs.
    offset: int = 0
    runs: int = 0
    # Parquet: every run is staged; only the conversion is left.
    stream_complete: bool = False
    version: int = _VERSION

    def save(self, output: Path) -> None:
        path = state_path(output)
        temporary = path.with_name(path.name + ".tmp")
        with open(temporary, "wb") as file:
            file.write(orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    @classmethod
    def load(cls, output: Path) -> ExportState:
        path = state_path(output)
        try:
            data = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            raise StateError(
                f"nothing to resume: no {path.name} next to {output} (the export finished, or never started)"
            ) from None
        except (OSError, orjson.JSONDecodeError) as exc:
            raise StateError(f"cannot read {path}: {exc}; delete it and {output} to start over") from None
        if not isinstance(data, dict) or data.get("version") != _VERSION:
            raise StateError(f"{path} is not an export state this version understands; start over")
        try:
            return cls(**data)
        except TypeError as exc:
            raise StateError(f"{path} is malformed ({exc}); start over") from None

    @staticmethod
    def remove(output: Path) -> None:
        state_path(output).unlink(missing_ok=True)
