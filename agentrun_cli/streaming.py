"""Following a run's event stream into a view, and cancelling it cleanly on Ctrl-C."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from agentrun_cli.client import EventStream, ExecutionClient
from agentrun_cli.errors import ServiceError
from agentrun_cli.progress import RunProgress, StreamEvent
from agentrun_cli.views import StreamView

CANCEL_TIMEOUT_S = 5.0
# How long to wait for run_finished after asking the server to cancel.
CANCEL_GRACE_S = 5.0


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
    stream: EventStream[StreamEvent],
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
    except ServiceError as exc:
        import sys; print("DEBUG cancel", repr(exc), file=sys.stderr)
        stream.cancel()  # it may have ended already (FAILED_PRECONDITION); a disconnect cancels otherwise
        return
    timer = threading.Timer(grace_s, stream.cancel)
    timer.daemon = True
    timer.start()
    try:
        follow(stream, view, progress)
    except (ServiceError, KeyboardInterrupt) as exc:
        import sys; print("DEBUG drain", repr(exc), file=sys.stderr)
    finally:
        timer.cancel()
        stream.cancel()
