"""A run's steps for the pages: one row per step (the steps in sequence) and what the side pane shows about a step.

Unknown payloads (a newer service's step kinds) are shown as such, with their sequence and time, never dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agentrun.runs.v1 import run_pb2
from google.protobuf import text_format, timestamp_pb2

from agentrun_cli.render.steps import step_summary
from agentrun_web.views import format as fmt

UNKNOWN_KIND = "unknown"
SUMMARY_CHARS = 160
KIND_LABELS = {
    "model_call": "model call",
    "tool_call": "tool call",
    "tool_result": "tool result",
    "final_response": "final response",
    "error": "error",
    "session_history": "session history",
    "resumed": "resumed",
}


def kind_of(step: run_pb2.ExecutionStep) -> str:
    return step.WhichOneof("payload") or UNKNOWN_KIND


def kind_label(kind: str) -> str:
    """A person's name for a step kind: a kind newer than this console shows its raw name."""
    if kind == UNKNOWN_KIND:
        return "unknown step kind"
    return KIND_LABELS.get(kind, kind.replace("_", " "))


def is_known(kind: str) -> bool:
    return kind in KIND_LABELS


def payload_text(step: run_pb2.ExecutionStep) -> str:
    """The payload of a step kind this console has no view for, as protobuf text (what there is to show)."""
    kind = step.WhichOneof("payload")
    return text_format.MessageToString(getattr(step, kind), as_utf8=True) if kind else ""


@dataclass(frozen=True, slots=True)
class StepRow:
    sequence: int
    at: str
    kind: str
    summary: str
    # The waterfall bar this step belongs to ("" for steps without one).
    bar_key: str
    failed: bool


def _bar_key(step: run_pb2.ExecutionStep, kind: str) -> str:
    if kind == "model_call":
        return f"model-{step.sequence}"
    if kind == "tool_call":
        return f"tool-{step.tool_call.call_id or step.sequence}"
    if kind == "tool_result":
        return f"tool-{step.tool_result.call_id or step.sequence}"
    return ""


def _failed(step: run_pb2.ExecutionStep, kind: str) -> bool:
    if kind == "error":
        return True
    if kind == "tool_result":
        result = step.tool_result
        return result.is_error or result.status not in (
            run_pb2.TOOL_CALL_STATUS_SUCCEEDED,
            run_pb2.TOOL_CALL_STATUS_UNSPECIFIED,
        )
    return False


def step_row(step: run_pb2.ExecutionStep, run_start: timestamp_pb2.Timestamp | None) -> StepRow:
    kind = kind_of(step)
    at = ""
    if run_start is not None and step.HasField("time"):
        at = f"+{max(fmt.offset_s(run_start, step.time), 0.0):.3f}s"
    if kind == UNKNOWN_KIND:
        summary = "a step kind this console does not know (newer service?)"
    elif not is_known(kind):
        summary = " ".join(payload_text(step).split())
    else:
        summary = step_summary(step)
    return StepRow(
        sequence=step.sequence,
        at=at,
        kind=kind,
        summary=fmt.truncate(summary, SUMMARY_CHARS),
        bar_key=_bar_key(step, kind),
        failed=_failed(step, kind),
    )


def step_rows(steps: Sequence[run_pb2.ExecutionStep], run_start: timestamp_pb2.Timestamp | None) -> list[StepRow]:
    return [step_row(step, run_start) for step in steps]


def find_steps(steps: Sequence[run_pb2.ExecutionStep], sequences: Sequence[int]) -> list[run_pb2.ExecutionStep]:
    """The steps with these sequences, in sequence order (steps are stored in order, numbered from 1)."""
    wanted = set(sequences)
    return [step for step in steps if step.sequence in wanted]
