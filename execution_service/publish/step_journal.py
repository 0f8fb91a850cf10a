"""The live-steps journal: every step of every run in progress, written the moment it is recorded, so that a run
interrupted by a crash is stored INTERRUPTED with every step a client saw (publish.recovery rebuilds it).

One append-only file per live run, `<directory>/<run id>.steps`, in the directory beside the outbox file. Each step
is one frame: 4 bytes little-endian payload length, 4 bytes CRC-32 of the payload, then the payload (a serialized
agentrun.runs.v1.ExecutionStep). A run's file is deleted once its terminal record is in the outbox (and, at start-up,
once recovery has put its INTERRUPTED record there); files of runs that are not live are deleted at start-up.

Ordering and durability. `append` writes the frame with one `write(2)` on the calling (event loop) thread, before the
step is handed to the run's watchers (engine.manager): a step a client saw is in the kernel's page cache, which a
SIGKILL or any other death of the process does not lose. There is no fsync: a power loss or an OS crash may lose the
latest steps (the run is then stored INTERRUPTED with the steps that reached the disk). The write costs ~1-2 us (13
us for a 64 KB step), against ~110 us for a round trip through the outbox's worker thread, which would have doubled
the time from a step to its client. The step is serialized once: the bytes written are the bytes the stream sends
(`append` returns them; LiveRun carries them to the servicer). A frame torn by a crash in the middle of a write (or
damaged on disk) fails its length or CRC check: the steps before it are kept, the rest of the file is ignored.

Appends cost O(step), never a rewrite of the run. Descriptors stay open between a run's steps, for at most
`max_open_files` runs at a time (least recently used closed first), so thousands of live runs do not hold thousands
of descriptors.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import struct
import zlib
from collections import OrderedDict
from pathlib import Path

from agentrun.runs.v1 import run_pb2
from google.protobuf.message import DecodeError

from agentrun_core.domain import ExecutionStep
from agentrun_core.proto_convert import ConversionError, step_from_pb, step_to_pb

log = logging.getLogger(__name__)

SUFFIX = ".steps"
_HEADER = struct.Struct("<II")  # payload length, CRC-32 of the payload
_SAFE_NAME = re.compile(r"[0-9A-Za-z_-]{1,64}")
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)


def journal_directory(outbox_path: Path) -> Path:
    """The journal of the instance whose outbox is `outbox_path`: `data/outbox.db` -> `data/outbox.live-steps`."""
    return outbox_path.with_name(f"{outbox_path.stem}.live-steps")


class StepJournal:
    def __init__(self, directory: Path, *, max_open_files: int = 256) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        # Runs whose journal failed (disk full, I/O error): logged once, not retried at every step.
        self._failed: set[str] = set()
        # Descriptors of the runs that journaled most recently (least recent first), at most `max_open_files`: a
        # run's later steps cost one write(2); beyond that many live runs, the least recent is closed and reopened
        # at its next step.
        self._open: OrderedDict[str, int] = OrderedDict()
        self._max_open = max(1, max_open_files)

    def path(self, run_id: str) -> Path:
        name = run_id if _SAFE_NAME.fullmatch(run_id) else hashlib.sha256(run_id.encode()).hexdigest()
        return self.directory / f"{name}{SUFFIX}"

    # --- while runs execute (event loop thread) --------------------------------------------------------------

    def append(self, step: ExecutionStep) -> bytes:
        """Appends the step to its run's file; returns the step as written (a serialized ExecutionStep), which the
        stream sends as is. Never raises: a run whose journal cannot be written goes on (its steps are still
        streamed and, at its end, stored), and the failure is logged once at ERROR."""
        payload = step_to_pb(step).SerializeToString()
        run_id = step.run_id
        if run_id in self._failed:
            return payload
        data = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        try:
            fd = self._fd(run_id)
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"short write: {written} of {len(data)} bytes")
        except OSError as exc:
            self._failed.add(run_id)
            self._close(run_id)
            log.error(
                "cannot journal the run's steps; if this process dies before the run ends, its steps from now on "
                "are lost (the run itself goes on)",
                extra={"run_id": run_id, "sequence": step.sequence, "journal": str(self.directory), "error": str(exc)},
            )
        return payload

    def forget(self, run_id: str) -> None:
        """Deletes the run's file (its terminal or INTERRUPTED record is in the outbox now)."""
        self._failed.discard(run_id)
        self._close(run_id)
        try:
            self.path(run_id).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot delete a journal file", extra={"run_id": run_id, "error": str(exc)})

    def close(self) -> None:
        """Closes every descriptor (the files stay: their runs are still live)."""
        for run_id in list(self._open):
            self._close(run_id)

    def _fd(self, run_id: str) -> int:
        fd = self._open.get(run_id)
        if fd is not None:
            self._open.move_to_end(run_id)
            return fd
        fd = os.open(self.path(run_id), _FLAGS, 0o600)
        self._open[run_id] = fd
        if len(self._open) > self._max_open:
            self._close(next(iter(self._open)))
        return fd

    def _close(self, run_id: str) -> None:
        fd = self._open.pop(run_id, None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError as exc:
                log.warning("cannot close a journal file", extra={"run_id": run_id, "error": str(exc)})

    # --- recovery (start-up) ---------------------------------------------------------------------------------

    def read(self, run_id: str) -> list[ExecutionStep]:
        """The run's journaled steps, in order; those after a torn or damaged frame are left out (and logged)."""
        path = self.path(run_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        steps: list[ExecutionStep] = []
        offset = 0
        while offset < len(data):
            problem, step, offset = _next_frame(data, offset, run_id)
            if problem is not None:
                log.warning(
                    "journal file ends in a torn or damaged frame; the steps before it are kept",
                    extra={"run_id": run_id, "journal": str(path), "offset": offset, "problem": problem},
                )
                break
            assert step is not None
            steps.append(step)
        return steps

    def remove_stray(self, live_run_ids: set[str]) -> list[str]:
        """Deletes the files of runs that are not live (their terminal record was put before the file went)."""
        keep = {self.path(run_id).name for run_id in live_run_ids}
        removed = []
        for path in self.directory.glob(f"*{SUFFIX}"):
            if path.name not in keep:
                path.unlink(missing_ok=True)
                removed.append(path.name.removesuffix(SUFFIX))
        if removed:
            log.info("deleted journal files of runs that had already ended", extra={"files": len(removed)})
        return removed


def _next_frame(data: bytes, offset: int, run_id: str) -> tuple[str | None, ExecutionStep | None, int]:
    """(problem, step, next offset) for the frame at `offset`."""
    if len(data) - offset < _HEADER.size:
        return "truncated header", None, offset
    length, crc = _HEADER.unpack_from(data, offset)
    start = offset + _HEADER.size
    payload = data[start : start + length]
    if len(payload) < length:
        return "truncated payload", None, offset
    if zlib.crc32(payload) != crc:
        return "CRC mismatch", None, offset
    try:
        step = step_from_pb(run_pb2.ExecutionStep.FromString(payload), "journaled step")
    except (DecodeError, ConversionError) as exc:
        return f"unreadable step: {exc}", None, offset
    if step.run_id != run_id:
        return f"a step of run {step.run_id!r}", None, offset
    return None, step, start + length
