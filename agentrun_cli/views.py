"""How a streamed run is shown: a live terminal view, plain lines for pipes, or JSON lines for programs."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Protocol

from rich.console import Console
from rich.live import Live

from agentrun_cli import output
from agentrun_cli.progress import RunProgress, StreamEvent
from agentrun_cli.render import live as live_render
from agentrun_cli.render import steps as st
from agentrun_cli.render.summary import summary_lines, summary_panel


class StreamView(Protocol):
    def __enter__(self) -> StreamView: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def show(self, event: StreamEvent, progress: RunProgress) -> None:
        """Called after `progress` has taken the event in."""

    def notice(self, text: str) -> None:
        """A remark from the CLI itself (cancelling, detached...)."""

    def summary(self, progress: RunProgress) -> None:
        """Called once after the stream, when the run has finished."""


class LiveView:
    def __init__(self, console: Console) -> None:
        self._console = console
        self._progress = RunProgress()
        self._live = Live(
            console=console,
            get_renderable=lambda: live_render.live_area(self._progress),
            refresh_per_second=12,
            transient=True,
        )

    def __enter__(self) -> LiveView:
        self._live.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._live.stop()

    def show(self, event: StreamEvent, progress: RunProgress) -> None:
        self._progress = progress
        kind = event.WhichOneof("event")
        if kind == "run_queued":
            self._console.print(live_render.queued_line(event.run_queued))
        elif kind == "run_started":
            self._console.print(live_render.started_line(event.run_started))
        elif kind == "step":
            line = live_render.live_step_line(event.step, progress)
            if line is not None:
                self._console.print(line)
        self._live.refresh()

    def notice(self, text: str) -> None:
        self._console.print(f"[yellow]{text}[/yellow]")

    def summary(self, progress: RunProgress) -> None:
        if progress.finished is not None:
            self._console.print(summary_panel(progress.finished))


class PlainView:
    """One line per event, flushed as it arrives; no colours, no cursor movement."""

    def __enter__(self) -> PlainView:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def show(self, event: StreamEvent, progress: RunProgress) -> None:
        kind = event.WhichOneof("event")
        if kind == "run_queued":
            output.print_line(live_render.queued_plain(event.run_queued))
        elif kind == "run_started":
            output.print_line(live_render.started_plain(event.run_started))
        elif kind == "step":
            output.print_line(st.plain_line(event.step))

    def notice(self, text: str) -> None:
        output.print_line(text)

    def summary(self, progress: RunProgress) -> None:
        if progress.finished is not None:
            for line in summary_lines(progress.finished):
                output.print_line(line)


class JsonView:
    """Every streamed event as one compact JSON line; remarks go to stderr (stdout stays parseable)."""

    def __enter__(self) -> JsonView:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def show(self, event: StreamEvent, progress: RunProgress) -> None:
        output.print_data_line(output.json_line(event))

    def notice(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def summary(self, progress: RunProgress) -> None:
        return None


def choose_view(*, as_json: bool, console: Console) -> StreamView:
    if as_json:
        return JsonView()
    if console.is_terminal:
        return LiveView(console)
    return PlainView()
