"""Following a run's event stream into a view, and cancelling it cleanly on Ctrl-C.

The stream is read by a daemon thread: a KeyboardInterrupt then interrupts the main thread's wait on a queue,
never a gRPC receive in progress (interrupting one leaves the call unable to deliver the rest of the stream).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

import grpc

from agentrun_cli.client import EventStream, ExecutionClient
from agentrun_cli.errors import CliError, ServiceError
from agentrun_cli.progress import RunProgress, StreamEvent
from agentrun_cli.views import StreamView

CANCEL_TIMEOUT_S = 5.0
# How long to wait for run_finished after asking the server to cancel.
CANCEL_GRACE_S = 5.0
_POLL_S = 0.1

E = TypeVar("E")


class BackgroundStream(Generic[E]):
    """Iterates an EventStream from a daemon thread; iteration here waits on a queue, so it can be interrupted
    and resumed. Once `deadline` (a time.monotonic() value) passes, the stream is closed and iteration stops."""

    def __init__(self, stream: EventStream[E]) -> None:
        self._stream = stream
        self._queue: queue.Queue[tuple[str, E | CliError | None]] = queue.Queue()
        self.deadline: float | None = None
        self._thread = threading.Thread(target=self._pump, name="agentrun-stream", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            for event in self._stream:
                self._queue.put(("event", event))
            self._queue.put(("end", None))
        except CliError as exc:
            self._queue.put(("error", exc))
        except Exception as exc:
            self._queue.put(("error", CliError(f"the stream failed: {exc}")))

    def __iter__(self) -> BackgroundStream[E]:
        return self

    def __next__(self) -> E:
        while True:
            if self.deadline is not None and time.monotonic() >= self.deadline:
                self.cancel()
                raise StopIteration
            try:
                kind, value = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if kind == "end":
                raise StopIteration
            if isinstance(value, CliError):
                raise value
            return value  # type: ignore[return-value]

    def cancel(self) -> None:
        """Closes the stream; the server sees a disconnect."""
        self._stream.cancel()


def reattach_command(run_id: str, progress: RunProgress, *, through: str = "") -> str:
    """The command that watches the run again from just after the steps received, through any replica (`through`: an
    --execution-target value for the command): `--from` when they are all the run's own, else `--after
    RUN:SEQUENCE` for each run (its sub-agents' too)."""
    command = (
        f"agentrun --execution-target {through} runs watch {run_id}" if through else f"agentrun runs watch {run_id}"
    )
    received = progress.last_received
    if not received:
        return command
    if set(received) == {run_id}:
        return f"{command} --from {received[run_id] + 1}"
    after = " ".join(f"--after {run}:{sequence}" for run, sequence in received.items())
    return f"{command} {after}"


@contextmanager
def reattach_when_lost(progress: RunProgress) -> Iterator[None]:
    """A stream lost once the run was known (its service went away: UNAVAILABLE) says that the run may go on and how
    to watch it again, through this service or another replica, rather than only that the service is unreachable."""
    try:
        yield
    except ServiceError as error:
        run_id = progress.run_id
        if error.code is not grpc.StatusCode.UNAVAILABLE or not run_id or progress.finished is not None:
            raise
        endpoint = error.endpoint
        said = f": {error.status_details}" if error.status_details else ""
        lost = CliError(
            f"lost the stream of run {run_id}: {endpoint.service} at {endpoint.target} went away (UNAVAILABLE{said})",
            error.exit_code,
        )
        lost.details = [
            "the run may still be going on (a detached run, or in the durable mode on another replica); "
            f"see `agentrun runs show {run_id}`",
            f"watch it again from where this stream stopped: `{reattach_command(run_id, progress)}`; through another "
            f"replica: `{reattach_command(run_id, progress, through='HOST:PORT')}`",
        ]
        raise lost from None


def follow(
    events: Iterable[StreamEvent], view: StreamView, progress: RunProgress, *, until_started: bool = False
) -> None:
    """Feeds events to `progress` and `view` until run_finished (or run_started when `until_started`)."""
    for event in events:
        progress.apply(event)
        view.show(event, progress)
        kind = event.WhichOneof("event")
        if kind == "run_finished" or (until_started and kind == "run_started"):
            return


def cancel_and_drain(
    client: ExecutionClient,
    stream: BackgroundStream[StreamEvent],
    view: StreamView,
    progress: RunProgress,
    *,
    grace_s: float = CANCEL_GRACE_S,
) -> None:
    """Asks the server to stop the run now, then shows what arrives until run_finished or `grace_s` passes.
    Without a run id yet, closing the stream is the cancel (the server treats a disconnect as one)."""
    if not progress.run_id:
        stream.cancel()
        return
    view.notice(f"cancelling run {progress.run_id}…")
    try:
        client.cancel_run(progress.run_id, timeout=CANCEL_TIMEOUT_S)
    except ServiceError:
        stream.cancel()  # it may have ended already (FAILED_PRECONDITION); a disconnect cancels otherwise
        return
    stream.deadline = time.monotonic() + grace_s
    try:
        follow(stream, view, progress)
    except (CliError, KeyboardInterrupt):
        pass
    finally:
        stream.cancel()
