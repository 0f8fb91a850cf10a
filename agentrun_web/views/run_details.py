"""Everything the run page shows about one run, from GetRun (FULL), or from WatchRun's RunStarted / RunFinished while
RunsService has not stored the run yet."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agentrun.execution.v1 import execution_service_pb2 as ex_pb2
from agentrun.runs.v1 import run_pb2

from agentrun_web.views import format as fmt
from agentrun_web.views import waterfall as wf
from agentrun_web.views.run_list import RunRow, run_row
from agentrun_web.views.steps import StepRow, step_rows

TOKEN_CARDS = (
    ("input", "input_tokens"),
    ("cached", "cached_tokens"),
    ("output", "output_tokens"),
    ("thinking", "thinking_tokens"),
    ("tool-use prompt", "tool_use_prompt_tokens"),
)


@dataclass(frozen=True, slots=True)
class TokenCard:
    label: str
    # TokenUsage field name ("total" for the total), for the live page's script.
    field: str
    value: int


def token_cards(usage: run_pb2.TokenUsage) -> list[TokenCard]:
    cards = [TokenCard(label, name, getattr(usage, name)) for label, name in TOKEN_CARDS]
    cards.append(TokenCard("total", "total_tokens", fmt.total_tokens(usage)))
    return cards


def usage_of_steps(steps: Sequence[run_pb2.ExecutionStep]) -> run_pb2.TokenUsage:
    """The sum of the model calls' usage (what a live page starts from, before the run's own totals exist)."""
    total = run_pb2.TokenUsage()
    for step in steps:
        if step.WhichOneof("payload") == "model_call":
            usage = step.model_call.usage
            for _, name in (*TOKEN_CARDS, ("total", "total_tokens")):
                setattr(total, name, getattr(total, name) + getattr(usage, name))
    return total


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where a run sits among others: its session, the run whose tool call started it (sub-agents), its tree's top
    run, and the run it was forked from."""

    session_id: str
    parent_run_id: str
    parent_tool_call_id: str
    root_run_id: str
    depth: int
    forked_from_run_id: str
    forked_from_sequence: int


def lineage(run: run_pb2.Run) -> Lineage:
    forked = run.HasField("forked_from")
    return Lineage(
        session_id=run.session_id,
        parent_run_id=run.parent_run_id,
        parent_tool_call_id=run.parent_tool_call_id,
        root_run_id=run.root_run_id if run.root_run_id != run.parent_run_id else "",
        depth=run.depth,
        forked_from_run_id=run.forked_from.run_id if forked else "",
        forked_from_sequence=run.forked_from.sequence if forked else 0,
    )


@dataclass(frozen=True, slots=True)
class Descendant:
    """A sub-agent run of the page's run, for the tree of its sub-agent runs."""

    row: RunRow
    # How far below the page's run (1: a child).
    level: int
    parent_tool_call_id: str


def descendant_rows(run: run_pb2.Run, descendants: Sequence[run_pb2.Run]) -> list[Descendant]:
    """The descendants in tree order (each under its parent, siblings by start time, as GetRun orders them); one
    whose parent is not among them hangs under the run."""
    known = {run.id, *(d.id for d in descendants)}
    children: dict[str, list[run_pb2.Run]] = {}
    for descendant in descendants:
        parent = descendant.parent_run_id if descendant.parent_run_id in known else run.id
        children.setdefault(parent, []).append(descendant)
    out: list[Descendant] = []

    def walk(parent_id: str, level: int) -> None:
        for child in children.get(parent_id, []):
            out.append(Descendant(run_row(child), level, child.parent_tool_call_id))
            walk(child.id, level + 1)

    walk(run.id, 1)
    return out


@dataclass(frozen=True, slots=True)
class RunPage:
    run: run_pb2.Run
    live: bool
    status: str
    status_class: str
    error: str
    cards: list[TokenCard]
    cost: str
    price_table: str
    trace_link: str
    labels: list[tuple[str, str]]
    variables: list[tuple[str, str]]
    waterfall: wf.Waterfall
    rows: list[StepRow]
    # Live pages: the first sequence the event stream should send (the page already shows the ones before it).
    from_sequence: int
    start_iso: str
    lineage: Lineage
    descendants: list[Descendant]
    descendants_truncated: bool
    # With sub-agent runs: the tokens and cost of the run and all of them (each counted once).
    cards_with_descendants: list[TokenCard]
    cost_with_descendants: str


def run_page(
    run: run_pb2.Run,
    *,
    trace_link: str,
    descendants: Sequence[run_pb2.Run] = (),
    descendants_truncated: bool = False,
) -> RunPage:
    live = fmt.is_live(run.status)
    steps = list(run.execution_steps)
    run_end = fmt.seconds(run.duration) if run.HasField("duration") else None
    usage = usage_of_steps(steps) if live else run.token_usage
    error = ""
    if run.HasField("error") and (run.error.reason or run.error.message):
        error = f"{run.error.reason}: {run.error.message}" if run.error.reason else run.error.message
    return RunPage(
        run=run,
        live=live,
        status=fmt.status_name(run.status),
        status_class=fmt.status_class(run.status),
        error=error,
        cards=token_cards(usage),
        cost=fmt.cost(run.cost) if run.HasField("cost") else fmt.NONE,
        price_table=run.cost.price_table_version if run.HasField("cost") else "",
        trace_link=trace_link,
        labels=sorted(run.labels.items()),
        variables=sorted(run.variables.items()),
        waterfall=wf.build(steps, run.start_time, run_end_s=run_end, live=live),
        rows=step_rows(steps, run.start_time if run.HasField("start_time") else None),
        from_sequence=(max(step.sequence for step in steps) + 1) if steps else 0,
        start_iso=fmt.iso(run.start_time) if run.HasField("start_time") else "",
        lineage=lineage(run),
        descendants=descendant_rows(run, descendants),
        descendants_truncated=descendants_truncated,
        cards_with_descendants=(
            token_cards(run.token_usage_with_descendants) if run.HasField("token_usage_with_descendants") else []
        ),
        cost_with_descendants=(fmt.cost(run.cost_with_descendants) if run.HasField("cost_with_descendants") else ""),
    )


def run_from_started(started: ex_pb2.RunStarted) -> run_pb2.Run:
    """A RUNNING run as far as RunStarted tells (RunsService has not stored it yet)."""
    return run_pb2.Run(
        id=started.run_id,
        agent_name=started.agent_name,
        agent_version=started.agent_version,
        model_name=started.model_name,
        user=started.user,
        start_time=started.start_time,
        trace_id=started.trace_id,
        status=run_pb2.RUN_STATUS_RUNNING,
        session_id=started.session_id,
        parent_run_id=started.parent_run_id,
        depth=started.depth,
    )


def started_from_queued(queued: ex_pb2.RunQueued) -> ex_pb2.RunStarted:
    """The run as far as RunQueued tells, as a RunStarted at its enqueue time (a run that ends in the queue has no
    RunStarted)."""
    return ex_pb2.RunStarted(
        run_id=queued.run_id,
        agent_name=queued.agent_name,
        agent_version=queued.agent_version,
        model_name=queued.model_name,
        start_time=queued.enqueue_time,
        trace_id=queued.trace_id,
        user=queued.user,
    )


def run_from_queued(queued: ex_pb2.RunQueued) -> run_pb2.Run:
    """A QUEUED run as far as RunQueued tells (RunsService has not stored it yet)."""
    run = run_from_started(started_from_queued(queued))
    run.status = run_pb2.RUN_STATUS_QUEUED
    return run


def run_from_finished(started: ex_pb2.RunStarted, finished: ex_pb2.RunFinished) -> run_pb2.Run:
    """The ended run as the event stream tells it (what the live page shows the moment it ends)."""
    run = run_from_started(started)
    run.status = finished.status
    run.final_response = finished.final_response
    run.token_usage.CopyFrom(finished.token_usage)
    run.steps_taken = finished.steps_taken
    if finished.HasField("duration"):
        run.duration.CopyFrom(finished.duration)
    if finished.HasField("end_time"):
        run.end_time.CopyFrom(finished.end_time)
    if finished.HasField("error"):
        run.error.CopyFrom(finished.error)
    if finished.HasField("cost"):
        run.cost.CopyFrom(finished.cost)
    if finished.HasField("token_usage_with_descendants"):
        run.token_usage_with_descendants.CopyFrom(finished.token_usage_with_descendants)
    if finished.HasField("cost_with_descendants"):
        run.cost_with_descendants.CopyFrom(finished.cost_with_descendants)
    return run
