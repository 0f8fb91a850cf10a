"""`agentrun runs list`: one row per run."""

from __future__ import annotations

from collections.abc import Sequence

from agentrun.runs.v1 import run_pb2
from rich.table import Table

from agentrun_cli.render import format as fmt


def runs_table(runs: Sequence[run_pb2.Run]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("id", no_wrap=True, style="cyan")
    table.add_column("agent")
    table.add_column("status", no_wrap=True)
    table.add_column("model")
    table.add_column("start", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("tokens", justify="right")
    table.add_column("cost", justify="right")
    table.add_column("tools")
    for run in runs:
        table.add_row(
            run.id,
            run.agent_name,
            fmt.status_text(run.status),
            run.model_name,
            fmt.optional_timestamp(run, "start_time"),
            fmt.optional_duration(run, "duration"),
            fmt.count(fmt.total_tokens(run.token_usage)),
            fmt.cost(run.cost) if run.HasField("cost") else fmt.NONE,
            ", ".join(run.tools_used),
        )
    return table
