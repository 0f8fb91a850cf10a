"""One execution step as a short summary: the plain lines of non-TTY output and the rows of the show view."""

from __future__ import annotations

from collections import Counter

from agentrun.runs.v1 import run_pb2

from agentrun_cli.render import format as fmt

OK_MARK = "✓"
ERROR_MARK = "✗"
RESULT_PREVIEW_CHARS = 120
ARGUMENTS_PREVIEW_CHARS = 200


def step_kind(step: run_pb2.ExecutionStep) -> str:
    return step.WhichOneof("payload") or "unknown"


def tool_succeeded(result: run_pb2.ToolCallFinished) -> bool:
    return not result.is_error and result.status in (
        run_pb2.TOOL_CALL_STATUS_SUCCEEDED,
        run_pb2.TOOL_CALL_STATUS_UNSPECIFIED,
    )


def model_call_summary(call: run_pb2.ModelCall) -> str:
    parts = [call.model or "model", fmt.tokens_brief(call.usage)]
    if call.finish_reason:
        parts.append(call.finish_reason)
    if call.HasField("time_to_first_token"):
        parts.append(f"TTFT {fmt.duration(call.time_to_first_token)}")
    if call.function_call_count:
        parts.append(fmt.plural(call.function_call_count, "tool call"))
    if call.input_token_limit:
        parts.append(f"context {call.context_window_used:.0%} of {fmt.count(call.input_token_limit)}")
    if call.failed_attempts:
        parts.append(failed_attempts_summary(call))
    if call.thoughts:
        parts.append("thoughts")
    return " · ".join(parts)


def failed_attempts_summary(call: run_pb2.ModelCall) -> str:
    """`3 failed attempts (429 x3), waited 20.0s`: what the retries cost."""
    codes = Counter(str(a.code) if a.code else a.reason for a in call.failed_attempts)
    waited = sum(fmt.seconds(a.wait_before_next) for a in call.failed_attempts if a.HasField("wait_before_next"))
    what = ", ".join(f"{code} x{n}" if n > 1 else code for code, n in codes.items())
    text = f"{fmt.plural(len(call.failed_attempts), 'failed attempt')} ({what})"
    return f"{text}, waited {fmt.human_seconds(waited)}" if waited else text


def tool_call_summary(call: run_pb2.ToolCallStarted) -> str:
    arguments = fmt.truncate(fmt.compact_json(call.arguments_json), ARGUMENTS_PREVIEW_CHARS)
    summary = f"{fmt.tool_label(call.tool_name, call.server)} {arguments}".rstrip()
    return f"{summary} → child run {call.child_run_id}" if call.child_run_id else summary


def resumed_summary(resumed: run_pb2.RunResumed) -> str:
    """`resumed on replica-b after 31.2 s (was replica-a)`."""
    gap = resumed.gap.seconds + resumed.gap.nanos / 1e9
    previous = f" (was {resumed.previous_replica})" if resumed.previous_replica else ""
    return f"resumed on {resumed.replica or 'a replica'} after {gap:.1f} s{previous}"


def session_history_summary(history: run_pb2.SessionHistory) -> str:
    """`session chat-1: 12 turns from 3 runs (4,210 tokens); dropped 5 turns (1 whole run) over the 8,000 limit`."""
    parts = [
        f"session {history.session_id}: {fmt.plural(history.turn_count, 'turn')} from "
        f"{fmt.plural(len(history.run_ids), 'run')} ({fmt.plural(history.token_count, 'token')})"
    ]
    if history.dropped_turn_count:
        whole = f" ({fmt.plural(len(history.dropped_run_ids), 'whole run')})" if history.dropped_run_ids else ""
        limit = f" over the {fmt.count(history.token_limit)}-token limit" if history.token_limit else ""
        parts.append(f"dropped {fmt.plural(history.dropped_turn_count, 'turn')}{whole}{limit}")
    return "; ".join(parts)


def tool_result_summary(result: run_pb2.ToolCallFinished) -> str:
    mark = OK_MARK if tool_succeeded(result) else ERROR_MARK
    parts = [result.tool_name, mark, fmt.duration(result.duration)]
    if not tool_succeeded(result) and result.status not in (
        run_pb2.TOOL_CALL_STATUS_FAILED,
        run_pb2.TOOL_CALL_STATUS_UNSPECIFIED,
    ):
        parts.append(fmt.tool_status_name(result.status))
    preview = fmt.truncate(result.result_text or result.result_json, RESULT_PREVIEW_CHARS)
    if preview:
        parts.append(preview)
    if result.truncated:
        parts.append(f"(truncated from {fmt.count(result.original_size_bytes)} bytes)")
    if result.child_run_id:
        parts.append(f"(child run {result.child_run_id})")
    return " ".join(parts)


def step_summary(step: run_pb2.ExecutionStep) -> str:
    kind = step.WhichOneof("payload")
    if kind == "model_call":
        return model_call_summary(step.model_call)
    if kind == "tool_call":
        return tool_call_summary(step.tool_call)
    if kind == "tool_result":
        return tool_result_summary(step.tool_result)
    if kind == "final_response":
        return fmt.truncate(step.final_response.text, RESULT_PREVIEW_CHARS)
    if kind == "error":
        return f"{step.error.reason}: {step.error.message}"
    if kind == "session_history":
        return session_history_summary(step.session_history)
    if kind == "resumed":
        return resumed_summary(step.resumed)
    return ""


def plain_line(step: run_pb2.ExecutionStep) -> str:
    """`[3] tool_result get_current_time ✓ 12 ms 2026-11-25T13:31:02Z`: one line per step for pipes and CI. A
    sub-agent's step (depth > 0, in its parent's stream) is indented by its depth and names its run."""
    line = f"[{step.sequence}] {step_kind(step)} {step_summary(step)}".rstrip()
    if step.depth:
        return f"{'  ' * step.depth}{line} (run {step.run_id})"
    return line


KIND_STYLES = {
    "model_call": "blue",
    "tool_call": "cyan",
    "tool_result": "green",
    "final_response": "bold green",
    "error": "bold red",
    "session_history": "magenta",
    "resumed": "yellow",
}
