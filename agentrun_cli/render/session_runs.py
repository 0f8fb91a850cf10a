"""`agentrun sessions show`: the session's runs, one row each, fitted to the terminal's width.

The offset, status, duration, tokens and cost are short and never cut. When the table is too wide, the run ids are
shortened to their last characters (as `runs list` does; `runs show` takes them as printed), then the blanks
between columns narrowed, then the agent (indented under its parent run) is cut with an ellipsis and the task
wrapped, the longer of them first (`render/fit.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as runs_pb2
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

from agentrun_cli.render import format as fmt
from agentrun_cli.render.fit import fit_widths, table_width
from agentrun_cli.render.run_list import short_id

TASK_CELL_CHARS = 60
# (header, justify) of each column, in order.
_COLUMNS = {
    "at": "right",
    "agent": "left",
    "status": "left",
    "duration": "right",
    "tokens": "right",
    "cost": "right",
    "id": "left",
    "task": "left",
}
FLEXIBLE = ("agent", "task")
# (shortened id, blanks between columns), from the most detailed to the most compact.
_LAYOUTS = ((False, 2), (True, 2), (True, 1))


def _cells(session: runs_pb2.Session, run: run_pb2.Run, *, compact_id: bool) -> dict[str, str]:
    indent = "  " * run.depth + ("└ " if run.depth else "")
    return {
        "at": fmt.offset(session.start_time, run.start_time),
        "agent": indent + run.agent_name,
        "status": fmt.status_name(run.status),
        "duration": fmt.optional_duration(run, "duration"),
        "tokens": fmt.count(fmt.total_tokens(run.token_usage)),
        "cost": fmt.cost(run.cost) if run.HasField("cost") else fmt.NONE,
        "id": short_id(run.id) if compact_id else run.id,
        "task": fmt.truncate(run.task, TASK_CELL_CHARS) if not run.depth else "",
    }


class SessionRunsTable:
    """A Rich renderable: the session's runs by start time, sub-agent runs indented under their parent."""

    def __init__(self, session: runs_pb2.Session, runs: Sequence[run_pb2.Run]) -> None:
        self.session = session
        self.runs = list(runs)

    def layout(self, max_width: int) -> tuple[list[dict[str, str]], dict[str, int], int, bool]:
        """For `max_width` cells: the rows' texts, each column's width, the blanks between columns, ids shortened."""
        for compact_id, gap in _LAYOUTS:
            rows = [_cells(self.session, run, compact_id=compact_id) for run in self.runs]
            widths = {name: max([cell_len(name), *(cell_len(row[name]) for row in rows)]) for name in _COLUMNS}
            if table_width(widths, gap) <= max_width:
                return rows, widths, gap, compact_id
        floors = {name: cell_len(name) for name in FLEXIBLE}
        return rows, fit_widths(widths, FLEXIBLE, floors, max_width, gap), gap, True

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        rows, widths, gap, ids_shortened = self.layout(options.max_width)
        table = Table(
            title="runs",
            title_justify="left",
            box=None,
            header_style="bold",
            pad_edge=False,
            padding=(0, gap, 0, 0),
            collapse_padding=False,
        )
        for name, justify in _COLUMNS.items():
            table.add_column(
                name,
                justify=justify,  # type: ignore[arg-type]
                style="cyan" if name == "id" else "",
                no_wrap=name != "task",
                overflow="fold" if name == "task" else "ellipsis",
                width=widths[name],
            )
        for run, row in zip(self.runs, rows, strict=True):
            cells: list[str | Text] = [row[name] for name in _COLUMNS]
            cells[list(_COLUMNS).index("status")] = fmt.status_text(run.status)
            table.add_row(*cells)
        yield table
        if ids_shortened:
            yield Text("ids shortened: runs show takes them as is; --json shows them in full", style="dim")
