"""The summary of a finished streamed run: a panel for terminals, key: value lines for pipes."""

from __future__ import annotations

from agentrun.execution.v1 import execution_service_pb2 as ex_pb2
from agentrun.runs.v1 import run_pb2
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agentrun_cli.render import format as fmt


def usage_line(usage: run_pb2.TokenUsage) -> str:
    tool_use = f"tool-use prompt {fmt.count(usage.tool_use_prompt_tokens)} · " if usage.tool_use_prompt_tokens else ""
    return (
        f"input {fmt.count(usage.input_tokens)} · output {fmt.count(usage.output_tokens)} · "
        f"cached {fmt.count(usage.cached_tokens)} · thinking {fmt.count(usage.thinking_tokens)} · {tool_use}"
        f"total {fmt.count(fmt.total_tokens(usage))}"
    )


def summary_fields(finished: ex_pb2.RunFinished) -> list[tuple[str, str]]:
    fields = [("status", fmt.status_name(finished.status))]
    if finished.HasField("error") and (finished.error.reason or finished.error.message):
        fields.append(("error", f"{finished.error.reason}: {finished.error.message}"))
    fields += [
        ("final response", finished.final_response or fmt.NONE),
        ("tokens", usage_line(finished.token_usage)),
        *(
            [("tokens with sub-agents", usage_line(finished.token_usage_with_descendants))]
            if finished.HasField("token_usage_with_descendants")
            else []
        ),
        ("duration", fmt.optional_duration(finished, "duration")),
        ("steps", str(finished.steps_taken)),
        ("tool calls", str(finished.tool_call_count)),
    ]
    if finished.HasField("cost"):
        fields.append(("cost", fmt.cost(finished.cost)))
    if finished.HasField("cost_with_descendants"):
        fields.append(("cost with sub-agents", fmt.cost(finished.cost_with_descendants)))
    fields.append(("run id", finished.run_id))
    fields.append(
        (
            "stored",
            "yes (RunsService has the complete run)"
            if finished.recorded
            else "not yet: RunsService did not acknowledge it in time; it is kept in the outbox and stored when "
            "RunsService accepts it",
        )
    )
    return fields


def summary_panel(finished: ex_pb2.RunFinished) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for name, value in summary_fields(finished):
        if name == "status":
            grid.add_row(name, fmt.status_text(finished.status))
        elif name == "error":
            grid.add_row(name, Text(value, style="red"))
        else:
            grid.add_row(name, value)
    return Panel(grid, title="run summary", title_align="left", border_style="dim")


def summary_lines(finished: ex_pb2.RunFinished) -> list[str]:
    return [f"{name}: {value}" for name, value in summary_fields(finished)]
