"""`agentrun runs list`: one row per run, fitted to the terminal's width.

Rich drops whole columns from the right when a table is too wide, which at 80 columns (also the width of any piped
output) left only id, status, start and duration. `RunsTable` instead fits the table itself, giving up detail in
this order until it fits:

1. everything in full;
2. the run id shortened to its last characters (`…2e3f4a5b`; a note under the table says that `runs show`, `watch`
   and `cancel` take them as printed, and that `--json` shows the full ids);
3. the start time without year and seconds (`11-25 13:31Z`);
4. one blank between columns instead of two;
5. agent, model and tools truncated with an ellipsis, the longest first (they share the width the other columns
   leave, max-min fairly: `render/fit.py`).

The id, status, start, duration, tokens and cost are never cut.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agentrun.runs.v1 import run_pb2
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

from agentrun_cli.render import format as fmt
from agentrun_cli.render.fit import fit_widths, table_width

SHORT_ID_CHARS = 8
# Truncated (with an ellipsis) when even the compact layout is too wide, the longest first; the others never are.
FLEXIBLE = ("agent", "model", "tools")
# (shortened id, short start time, blanks between columns), from the most detailed to the most compact.
_LAYOUTS = ((False, False, 2), (True, False, 2), (True, True, 2), (True, True, 1))


@dataclass(frozen=True, slots=True)
class _Column:
    header: str
    justify: str = "left"
    style: str = ""


_COLUMNS = {
    "id": _Column("id", style="cyan"),
    "agent": _Column("agent"),
    "status": _Column("status"),
    "model": _Column("model"),
    "start": _Column("start"),
    "duration": _Column("duration", justify="right"),
    "tokens": _Column("tokens", justify="right"),
    "cost": _Column("cost", justify="right"),
    "tools": _Column("tools"),
}


def short_id(run_id: str) -> str:
    """The last SHORT_ID_CHARS characters after an ellipsis (a UUIDv7 starts with its time, alike for runs started
    together; its end is random)."""
    return run_id if len(run_id) <= SHORT_ID_CHARS + 1 else "…" + run_id[-SHORT_ID_CHARS:]


def _short_start(run: run_pb2.Run) -> str:
    if not run.HasField("start_time"):
        return fmt.NONE
    return fmt.to_datetime(run.start_time).strftime("%m-%d %H:%MZ")


def _cells(run: run_pb2.Run, *, compact_id: bool, compact_start: bool) -> dict[str, str]:
    return {
        "id": short_id(run.id) if compact_id else run.id,
        "agent": run.agent_name,
        "status": fmt.status_name(run.status),
        "model": run.model_name,
        "start": _short_start(run) if compact_start else fmt.optional_timestamp(run, "start_time"),
        "duration": fmt.optional_duration(run, "duration"),
        "tokens": fmt.count(fmt.total_tokens(run.token_usage)),
        "cost": fmt.cost(run.cost) if run.HasField("cost") else fmt.NONE,
        "tools": ", ".join(run.tools_used),
    }


def _natural_widths(rows: Sequence[dict[str, str]]) -> dict[str, int]:
    return {
        name: max([cell_len(column.header), *(cell_len(row[name]) for row in rows)])
        for name, column in _COLUMNS.items()
    }


class RunsTable:
    """A Rich renderable: the runs as a table as wide as the console allows (see the module docstring)."""

    def __init__(self, runs: Iterable[run_pb2.Run]) -> None:
        self.runs = list(runs)

    def layout(self, max_width: int) -> tuple[list[dict[str, str]], dict[str, int], int, bool]:
        """For `max_width` cells: the rows' cell texts, each column's width, the blanks between columns and whether
        the ids are shortened."""
        for compact_id, compact_start, gap in _LAYOUTS:
            rows = [_cells(run, compact_id=compact_id, compact_start=compact_start) for run in self.runs]
            widths = _natural_widths(rows)
            if table_width(widths, gap) <= max_width:
                return rows, widths, gap, compact_id
        floors = {name: cell_len(_COLUMNS[name].header) for name in FLEXIBLE}
        return rows, fit_widths(widths, FLEXIBLE, floors, max_width, gap), gap, True

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        rows, widths, gap, ids_shortened = self.layout(options.max_width)
        # Padding on the right of each cell only (none after the last column): exactly `gap` blanks between columns.
        table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, gap, 0, 0), collapse_padding=False)
        for name, column in _COLUMNS.items():
            table.add_column(
                column.header,
                justify=column.justify,  # type: ignore[arg-type]
                style=column.style,
                no_wrap=True,
                overflow="ellipsis",
                width=widths[name],
            )
        for run, row in zip(self.runs, rows, strict=True):
            cells: list[str | Text] = [row[name] for name in _COLUMNS]
            cells[list(_COLUMNS).index("status")] = fmt.status_text(run.status)
            table.add_row(*cells)
        yield table
        if ids_shortened:
            yield Text(
                "ids shortened: runs show/watch/cancel take them as is; --json shows them in full",
                style="dim",
            )


def runs_table(runs: Sequence[run_pb2.Run]) -> RunsTable:
    return RunsTable(runs)
