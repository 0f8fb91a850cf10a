"""`agentrun runs diff A B`: two stored runs side by side, from the first step where they differ."""

from __future__ import annotations

from typing import Annotated

import typer

from agentrun_cli import output
from agentrun_cli.client import RunsClient
from agentrun_cli.commands.common import JsonOption, settings_of
from agentrun_cli.commands.runs import runs_app
from agentrun_cli.errors import handle_errors
from agentrun_cli.render.diff import diff_json, diff_view
from agentrun_cli.run_diff import diff_runs
from agentrun_cli.run_ids import resolve_run_id


@runs_app.command("diff")
@handle_errors
def diff_command(
    ctx: typer.Context,
    run_a: Annotated[str, typer.Argument(metavar="A", help="A run id, or a unique part of one (e.g. the original).")],
    run_b: Annotated[str, typer.Argument(metavar="B", help="Another run id, or a unique part of one (e.g. its fork).")],
    as_json: JsonOption = False,
) -> None:
    """Compare two runs: tokens, cost, duration and final answer, and their steps from the first that differs."""
    client = RunsClient(settings_of(ctx))
    try:
        a = client.get_run(resolve_run_id(client, run_a), full=True).run
        b = client.get_run(resolve_run_id(client, run_b), full=True).run
    finally:
        client.close()
    diff = diff_runs(a, b)
    if as_json:
        output.print_json(diff_json(diff))
        return
    output.console().print(diff_view(diff))
