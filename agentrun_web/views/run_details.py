"""Everything the run page shows about one run, from GetRun (FULL), or from WatchRun's RunStarted / RunFinished while
RunsService has not stored the run yet."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agentrun.execution.v1 import execution_service_pb2 as ex_pb2
from agentrun.runs.v1 import run_pb2

from agentrun_web.views import format as fmt
from agentrun_web.views import waterfall as wf
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


def run_page(run: run_pb2.Run, *, trace_link: str) -> RunPage:
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
    )


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
    return run
