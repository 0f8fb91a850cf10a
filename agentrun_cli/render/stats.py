"""`agentrun runs stats` and `agentrun runs tools`: aggregate tables."""

from __future__ import annotations

from collections.abc import Sequence

from agentrun.runs.v1 import runs_service_pb2 as runs_pb2
from rich.table import Table

from agentrun_cli.render import format as fmt


def run_stats_table(title: str, groups: Sequence[runs_pb2.RunStatsGroup]) -> Table:
    table = Table(title=title, title_justify="left", box=None, header_style="bold", pad_edge=False)
    table.add_column(title.removeprefix("by "))
    for name in ("runs", "success", "tokens", "cost", "p50", "p95", "max context"):
        table.add_column(name, justify="right", no_wrap=True)
    for group in groups:
        table.add_row(
            group.key or fmt.NONE,
            fmt.count(group.run_count),
            fmt.percent(group.success_rate),
            fmt.count(fmt.total_tokens(group.token_usage)),
            fmt.group_cost(group),
            fmt.optional_duration(group, "duration_p50"),
            fmt.optional_duration(group, "duration_p95"),
            fmt.percent(group.max_context_window_used) if group.max_context_window_used else fmt.NONE,
        )
    if not groups:
        table.caption = "no runs in this time range"
    return table


def tool_stats_table(tools: Sequence[runs_pb2.ToolStats]) -> Table:
    table = Table(title="tools", title_justify="left", box=None, header_style="bold", pad_edge=False)
    table.add_column("tool", no_wrap=True)
    table.add_column("server")
    for name in ("calls", "errors", "error rate", "p50", "p95"):
        table.add_column(name, justify="right", no_wrap=True)
    for tool in tools:
        table.add_row(
            tool.tool_name,
            tool.server,
            fmt.count(tool.call_count),
            fmt.count(tool.error_count),
            fmt.percent(tool.error_rate),
            fmt.optional_duration(tool, "duration_p50"),
            fmt.optional_duration(tool, "duration_p95"),
        )
    if not tools:
        table.caption = "no tool calls in this time range"
    return table
