"""`agentrun runs stats` and `agentrun runs tools`: aggregates over a time range."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

import typer
from agentrun.runs.v1 import runs_service_pb2 as runs_pb2
from rich.console import Group
from rich.text import Text

from agentrun_cli import output
from agentrun_cli.client import RunsClient
from agentrun_cli.commands.common import JsonOption, settings_of, usage_error
from agentrun_cli.commands.runs import runs_app
from agentrun_cli.errors import handle_errors
from agentrun_cli.params import ParamError, time_range
from agentrun_cli.proto_time import timestamp
from agentrun_cli.render.stats import run_stats_table, tool_stats_table


class GroupBy(StrEnum):
    AGENT = "agent"
    MODEL = "model"
    USER = "user"
    DAY = "day"
    STATUS = "status"
    SESSION = "session"


_GROUP_BY = {
    GroupBy.AGENT: runs_pb2.STATS_GROUP_BY_AGENT,
    GroupBy.MODEL: runs_pb2.STATS_GROUP_BY_MODEL,
    GroupBy.USER: runs_pb2.STATS_GROUP_BY_USER,
    GroupBy.DAY: runs_pb2.STATS_GROUP_BY_DAY,
    GroupBy.STATUS: runs_pb2.STATS_GROUP_BY_STATUS,
    GroupBy.SESSION: runs_pb2.STATS_GROUP_BY_SESSION,
}
# What `runs stats` shows without --by.
DEFAULT_GROUPS = (GroupBy.AGENT, GroupBy.MODEL)

SinceOption = Annotated[str | None, typer.Option("--since", help="How far back: 90m, 12h, 7d (default), 2w.")]
FromOption = Annotated[str | None, typer.Option("--from", help="Start (ISO 8601, UTC when no offset).")]
ToOption = Annotated[str | None, typer.Option("--to", help="End (ISO 8601); default now.")]
FilterOption = Annotated[str, typer.Option("--filter", help="Only runs matching this filter (runs list syntax).")]


def resolve_range(since: str | None, start: str | None, end: str | None) -> tuple[datetime, datetime]:
    try:
        return time_range(since, start, end)
    except ParamError as exc:
        raise usage_error(exc) from None


def range_caption(begin: datetime, end: datetime) -> Text:
    return Text(f"{begin:%Y-%m-%d %H:%M}Z → {end:%Y-%m-%d %H:%M}Z", style="dim")


@runs_app.command("stats")
@handle_errors
def run_stats(
    ctx: typer.Context,
    since: SinceOption = None,
    start: FromOption = None,
    end: ToOption = None,
    by: Annotated[GroupBy | None, typer.Option("--by", help="One grouping (default: agent and model).")] = None,
    filter_expr: FilterOption = "",
    as_json: JsonOption = False,
) -> None:
    """Runs, success rate, tokens, cost and p50/p95 duration, per agent and per model."""
    begin, finish = resolve_range(since, start, end)
    groupings = (by,) if by is not None else DEFAULT_GROUPS
    client = RunsClient(settings_of(ctx))
    try:
        responses = {
            grouping: client.get_run_stats(
                runs_pb2.GetRunStatsRequest(
                    start_time=timestamp(begin),
                    end_time=timestamp(finish),
                    group_by=_GROUP_BY[grouping],
                    filter=filter_expr,
                )
            )
            for grouping in groupings
        }
    finally:
        client.close()
    if as_json:
        if by is not None:
            output.print_json(responses[by])
        else:
            output.print_json({grouping.value: output.to_dict(resp) for grouping, resp in responses.items()})
        return
    tables = [run_stats_table(f"by {grouping.value}", resp.groups) for grouping, resp in responses.items()]
    spaced = [part for table in tables for part in (table, Text(""))]
    output.console().print(Group(range_caption(begin, finish), Text(""), *spaced[:-1]))


@runs_app.command("tools")
@handle_errors
def tool_stats(
    ctx: typer.Context,
    since: SinceOption = None,
    start: FromOption = None,
    end: ToOption = None,
    filter_expr: FilterOption = "",
    as_json: JsonOption = False,
) -> None:
    """Per-tool calls, error rate and p50/p95 duration."""
    begin, finish = resolve_range(since, start, end)
    client = RunsClient(settings_of(ctx))
    try:
        response = client.get_tool_stats(
            runs_pb2.GetToolStatsRequest(start_time=timestamp(begin), end_time=timestamp(finish), filter=filter_expr)
        )
    finally:
        client.close()
    if as_json:
        output.print_json(response)
        return
    output.console().print(Group(range_caption(begin, finish), Text(""), tool_stats_table(response.tools)))
