"""`agentrun runs diff A B`: two runs side by side from the first step where they differ."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from agentrun.runs.v1 import run_pb2
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agentrun_cli import output
from agentrun_cli.render import format as fmt
from agentrun_cli.render import steps as st
from agentrun_cli.run_diff import RunDiff, cost_amount, relation

STEP_CELL_CHARS = 160
FINAL_CELL_CHARS = 600


def _signed(value: float | int | Decimal, text: str) -> str:
    return f"+{text}" if value > 0 else text if value < 0 else "0"


def _seconds(run: run_pb2.Run) -> float | None:
    return fmt.seconds(run.duration) if run.HasField("duration") else None


def totals_table(diff: RunDiff) -> Table:
    a, b = diff.a, diff.b
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("")
    for name in ("A", "B", "B - A"):
        table.add_column(name, justify="right", no_wrap=True)
    tokens_a, tokens_b = fmt.total_tokens(a.token_usage), fmt.total_tokens(b.token_usage)
    table.add_row(
        "tokens", fmt.count(tokens_a), fmt.count(tokens_b), _signed(tokens_b - tokens_a, fmt.count(tokens_b - tokens_a))
    )
    for name in ("input_tokens", "output_tokens"):
        va, vb = getattr(a.token_usage, name), getattr(b.token_usage, name)
        table.add_row(f"  {name.split('_')[0]}", fmt.count(va), fmt.count(vb), _signed(vb - va, fmt.count(vb - va)))
    cost_a, cost_b = cost_amount(a), cost_amount(b)
    delta = fmt.NONE
    if cost_a is not None and cost_b is not None and a.cost.currency_code == b.cost.currency_code:
        delta = _signed(cost_b - cost_a, f"{cost_b - cost_a}")
    table.add_row(
        "cost",
        fmt.cost(a.cost) if cost_a is not None else fmt.NONE,
        fmt.cost(b.cost) if cost_b is not None else fmt.NONE,
        delta,
    )
    seconds_a, seconds_b = _seconds(a), _seconds(b)
    delta = fmt.NONE
    if seconds_a is not None and seconds_b is not None:
        change = seconds_b - seconds_a
        delta = _signed(change, ("-" if change < 0 else "") + fmt.human_seconds(abs(change)))
    table.add_row("duration", fmt.optional_duration(a, "duration"), fmt.optional_duration(b, "duration"), delta)
    steps_a, steps_b = len(a.execution_steps), len(b.execution_steps)
    table.add_row(
        "steps", fmt.count(steps_a), fmt.count(steps_b), _signed(steps_b - steps_a, fmt.count(steps_b - steps_a))
    )
    return table


def _run_line(name: str, run: run_pb2.Run) -> Text:
    return Text.assemble(
        (f"{name}  ", "bold"),
        (run.id, "cyan"),
        f"  {run.agent_name}  {run.model_name or fmt.NONE}  ",
        fmt.status_text(run.status),
    )


def _step_cell(step: run_pb2.ExecutionStep | None) -> Text:
    if step is None:
        return Text("(no step)", style="dim")
    kind = st.step_kind(step)
    return Text.assemble(
        (kind, st.KIND_STYLES.get(kind, "")), " ", fmt.truncate(st.step_summary(step), STEP_CELL_CHARS)
    )


def steps_table(diff: RunDiff) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("A", ratio=1)
    table.add_column("B", ratio=1)
    for pair in diff.pairs:
        marker = "=" if pair.same else "≠"
        table.add_row(f"{pair.position} {marker}", _step_cell(pair.a), _step_cell(pair.b))
    return table


def first_difference_line(diff: RunDiff) -> Text:
    shared = diff.identical_steps
    if diff.first_difference is None:
        return Text(f"the runs' {fmt.plural(shared, 'step')} are the same", style="bold green")
    if shared == 0:
        return Text("the runs differ from step 1:", style="bold")
    same = "step 1 is" if shared == 1 else f"steps 1-{shared} are"
    return Text(f"{same} the same; they differ from step {diff.first_difference}:", style="bold")


def _final(run: run_pb2.Run) -> str:
    if run.final_response:
        return fmt.truncate(run.final_response, FINAL_CELL_CHARS)
    if run.HasField("error") and (run.error.reason or run.error.message):
        return f"(no final answer: {run.error.reason}: {run.error.message})"
    return "(no final answer)"


def diff_view(diff: RunDiff) -> RenderableType:
    parts: list[RenderableType] = [_run_line("A", diff.a), _run_line("B", diff.b)]
    related = relation(diff.a, diff.b)
    if related:
        parts.append(Text(related, style="dim"))
    parts += [Text(""), totals_table(diff), Text(""), first_difference_line(diff)]
    if diff.pairs:
        parts.append(steps_table(diff))
    parts.append(Text(""))
    same_answer = diff.a.final_response == diff.b.final_response
    title = "final answer" + (" (the same)" if same_answer else "")
    answers = Table(box=None, show_header=False, pad_edge=False)
    answers.add_column(style="bold", no_wrap=True)
    answers.add_column()
    answers.add_row("A", _final(diff.a))
    answers.add_row("B", _final(diff.b))
    parts.append(Panel(answers, title=title, title_align="left"))
    return Group(*parts)


def _side(run: run_pb2.Run) -> dict[str, Any]:
    cost = cost_amount(run)
    return {
        "id": run.id,
        "agentName": run.agent_name,
        "modelName": run.model_name,
        "status": run_pb2.RunStatus.Name(run.status),
        "tokenUsage": output.to_dict(run.token_usage),
        "cost": None if cost is None else output.to_dict(run.cost),
        "durationSeconds": _seconds(run),
        "steps": len(run.execution_steps),
        "finalResponse": run.final_response,
    }


def diff_json(diff: RunDiff) -> dict[str, Any]:
    """The comparison as JSON: both runs' totals, the shared prefix and the steps from the first difference."""
    return {
        "a": _side(diff.a),
        "b": _side(diff.b),
        "relation": relation(diff.a, diff.b),
        "identicalSteps": diff.identical_steps,
        "firstDifference": diff.first_difference,
        "steps": [
            {
                "position": pair.position,
                "same": pair.same,
                "a": None if pair.a is None else output.to_dict(pair.a),
                "b": None if pair.b is None else output.to_dict(pair.b),
            }
            for pair in diff.pairs
        ],
    }
