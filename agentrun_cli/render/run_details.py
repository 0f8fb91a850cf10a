"""`agentrun runs show ID`: everything stored about one run (GetRun with the FULL view)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from agentrun.runs.v1 import run_pb2
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agentrun_cli.render import format as fmt
from agentrun_cli.render import steps as st
from agentrun_cli.render.tree import has_descendants, run_tree

RESULT_CELL_CHARS = 80
ARGUMENTS_CELL_CHARS = 80


def _pairs(values: Mapping[str, str]) -> str:
    items = sorted(values.items())
    return ", ".join(f"{k}={v}" for k, v in items) if items else fmt.NONE


def header(run: run_pb2.Run, parent: run_pb2.Run | None = None) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    agent = run.agent_name + (f"@{run.agent_version}" if run.agent_version else "")
    grid.add_row("run", Text(run.id, style="bold cyan"))
    grid.add_row("agent", agent)
    grid.add_row("user", run.user or fmt.NONE)
    grid.add_row("status", fmt.status_text(run.status))
    grid.add_row("model", run.model_name or fmt.NONE)
    grid.add_row("start", fmt.optional_timestamp(run, "start_time"))
    grid.add_row("end", fmt.optional_timestamp(run, "end_time"))
    grid.add_row("duration", fmt.optional_duration(run, "duration"))
    if run.HasField("queue_duration") or run.status == run_pb2.RUN_STATUS_QUEUED:
        grid.add_row("queued", fmt.optional_duration(run, "queue_duration") + " in the queue before start")
    grid.add_row("trace id", run.trace_id or fmt.NONE)
    if run.session_id:
        grid.add_row("session", run.session_id)
    if run.parent_run_id:
        call = f"(tool call {run.parent_tool_call_id or fmt.NONE})"
        if parent is None:
            grid.add_row("parent", f"{run.parent_run_id} {call}")
        else:
            described = Text.assemble(f"{parent.agent_name} ", fmt.status_text(parent.status), f" {parent.id} {call}")
            grid.add_row("parent", described)
        if run.root_run_id and run.root_run_id != run.parent_run_id:
            grid.add_row("root", run.root_run_id)
        grid.add_row("depth", str(run.depth))
    if run.HasField("forked_from"):
        grid.add_row("forked from", f"{run.forked_from.run_id} at step {run.forked_from.sequence}")
    grid.add_row("labels", _pairs(run.labels))
    if run.variables:
        grid.add_row("variables", _pairs(run.variables))
    grid.add_row("task", run.task or fmt.NONE)
    return grid


def _usage_cells(usage: run_pb2.TokenUsage) -> list[str]:
    values = [
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_tokens,
        usage.thinking_tokens,
        usage.tool_use_prompt_tokens,
        fmt.total_tokens(usage),
    ]
    return [fmt.count(v) for v in values]


def token_table(usage: run_pb2.TokenUsage, with_descendants: run_pb2.TokenUsage | None = None) -> Table:
    """The run's token counts; with a second row including its descendants' when it has sub-agent runs."""
    table = Table(title="tokens", title_justify="left", box=None, header_style="bold", pad_edge=False)
    if with_descendants is not None:
        table.add_column("")
    for name in ("input", "output", "cached", "thinking", "tool-use prompt", "total"):
        table.add_column(name, justify="right")
    if with_descendants is None:
        table.add_row(*_usage_cells(usage))
    else:
        table.add_row("own", *_usage_cells(usage))
        table.add_row("with descendants", *_usage_cells(with_descendants))
    return table


def cost_line(run: run_pb2.Run, *, with_descendants: bool = False) -> Text:
    if run.status in (run_pb2.RUN_STATUS_QUEUED, run_pb2.RUN_STATUS_RUNNING):
        line = Text.assemble(("cost ", "bold"), "pending (priced when the run ends)")
    elif not run.HasField("cost") or not run.cost.amount:
        line = Text.assemble(("cost ", "bold"), "unknown (no price for this model)")
    else:
        line = Text.assemble(("cost ", "bold"), fmt.cost(run.cost))
        if with_descendants:
            line.append(" own")
    if with_descendants:
        total = fmt.cost(run.cost_with_descendants) if run.HasField("cost_with_descendants") else "unknown"
        line.append(f" · {total} with descendants")
    if run.HasField("cost") and run.cost.price_table_version:
        line.append(f"  (price table {run.cost.price_table_version})", style="dim")
    return line


def steps_table(run: run_pb2.Run) -> Table:
    table = Table(title="steps", title_justify="left", box=None, header_style="bold", pad_edge=False)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("at", justify="right", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("summary")
    for step in run.execution_steps:
        kind = st.step_kind(step)
        at = fmt.offset(run.start_time, step.time) if run.HasField("start_time") and step.HasField("time") else ""
        table.add_row(str(step.sequence), at, Text(kind, style=st.KIND_STYLES.get(kind, "")), st.step_summary(step))
    return table


def tool_calls_table(run: run_pb2.Run) -> Table:
    table = Table(title="tool calls", title_justify="left", box=None, header_style="bold", pad_edge=False)
    table.add_column("tool", no_wrap=True)
    table.add_column("server")
    table.add_column("arguments")
    table.add_column("result")
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for call in run.tool_calls:
        table.add_row(
            call.name,
            call.server,
            fmt.truncate(fmt.compact_json(call.parameters_json), ARGUMENTS_CELL_CHARS),
            fmt.truncate(call.result, RESULT_CELL_CHARS),
            fmt.optional_duration(call, "duration"),
            fmt.tool_status_text(call.status),
        )
    return table


def run_details(
    run: run_pb2.Run,
    descendants: Sequence[run_pb2.Run] = (),
    *,
    truncated: bool = False,
    parent: run_pb2.Run | None = None,
) -> RenderableType:
    """The run (FULL view) with, when it has sub-agent runs, its tree and its usage own vs with descendants."""
    composite = has_descendants(run, descendants)
    with_descendants = run.token_usage_with_descendants if composite else None
    parts: list[RenderableType] = [
        header(run, parent),
        Text(""),
        token_table(run.token_usage, with_descendants),
        cost_line(run, with_descendants=composite),
        Text(""),
    ]
    if composite:
        parts += [run_tree(run, descendants, truncated=truncated), Text("")]
    if run.HasField("error") and (run.error.reason or run.error.message):
        parts.append(
            Panel(Text(f"{run.error.reason}: {run.error.message}", style="red"), title="error", title_align="left")
        )
    if run.final_response:
        parts.append(Panel(run.final_response, title="final response", title_align="left", border_style="green"))
    parts.append(Text(""))
    parts.append(steps_table(run) if run.execution_steps else Text("no steps recorded", style="dim"))
    if run.tool_calls:
        parts += [Text(""), tool_calls_table(run)]
    return Group(*parts)
