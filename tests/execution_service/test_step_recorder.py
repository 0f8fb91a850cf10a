"""StepRecorder: every step streamed and stored is redacted, with the run's memory of the secrets it redacted, and
a truncated result keeps the size the tool returned."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from agentrun_core.domain import (
    ErrorReason,
    ExecutionStep,
    FinalResponse,
    ModelCall,
    RunError,
    TokenUsage,
    ToolCallFinished,
    ToolCallStarted,
)
from execution_service.engine.step_recorder import StepRecorder
from execution_service.model.base import FunctionCall, ModelResponse
from execution_service.redaction import REDACTED, RedactionRules, Redactor
from execution_service.tools.base import ResolvedTool, ToolOutcome

NOW = datetime.now(UTC)
TOOL = ResolvedTool(server="test", name="vault", exposed_name="vault", description="", input_schema={})
SECRETS = ("refresh-secret-456", "db-pass-7890", "sk-live-abcdefghijklmnopqrstuvwx")


def _recorder(**rules: int) -> tuple[StepRecorder, list[ExecutionStep]]:
    emitted: list[ExecutionStep] = []
    return StepRecorder("r1", emitted.append, Redactor(RedactionRules(**rules))), emitted  # type: ignore[arg-type]


def _model(text: str, *calls: FunctionCall) -> ModelResponse:
    return ModelResponse(model="scripted", text=text, function_calls=calls, usage=TokenUsage(), finish_reason="STOP")


def _everything(steps: list[ExecutionStep]) -> str:
    return repr(steps)


def test_a_model_paraphrasing_a_redacted_secret_is_scrubbed_everywhere_later_in_the_run() -> None:
    recorder, emitted = _recorder()
    # Turn 1: the model asks the tool; the tool answers with secrets under keys, in a URL and JSON-in-a-string.
    recorder.model_call(_model("Let me look.", FunctionCall("c1", "vault", {})), started=NOW, duration=timedelta(0))
    recorder.tool_started("c1", TOOL, {}, time=NOW)
    result = {
        "refreshToken": SECRETS[0],
        "dsn": f"postgres://app:{SECRETS[1]}@db:5432/x",
        "config": json.dumps({"api": {"secretKey": SECRETS[2]}}),
        "token_count": 12,
    }
    recorder.tool_finished(
        "c1",
        "vault",
        ToolOutcome(text=json.dumps(result), structured_json=json.dumps(result)),
        time=NOW,
        duration=timedelta(0),
    )
    # Turn 2: the model repeats the secrets in prose (no key, no pattern) and passes one on to another tool.
    recorder.model_call(
        _model(f"The refreshToken is {SECRETS[0]}; the database password is {SECRETS[1]}."),
        started=NOW,
        duration=timedelta(0),
    )
    recorder.tool_started("c2", TOOL, {"query": f"rotate {SECRETS[2]} now", "n": 1}, time=NOW)
    recorder.tool_finished("c2", "vault", ToolOutcome(text=f"rotated {SECRETS[2]}"), time=NOW, duration=timedelta(0))
    recorder.final_response(f"Done: your refreshToken is {SECRETS[0]} and the API key was {SECRETS[2]}.")
    recorder.error(RunError(ErrorReason.INTERNAL, f"tool said: invalid key {SECRETS[2]}"))

    assert emitted == recorder.steps
    blob = _everything(recorder.steps)
    for secret in SECRETS:
        assert secret not in blob, secret
    assert SECRETS[0] not in recorder.scrub_final(f"again {SECRETS[0]}")
    payloads = [s.payload for s in recorder.steps]
    first_result = payloads[2]
    assert isinstance(first_result, ToolCallFinished)
    stored = json.loads(first_result.result_text)
    assert stored["token_count"] == 12 and stored["dsn"] == f"postgres://app:{REDACTED}@db:5432/x"
    assert json.loads(stored["config"]) == {"api": {"secretKey": REDACTED}}
    prose = payloads[3]
    assert isinstance(prose, ModelCall)
    assert prose.text == f"The refreshToken is {REDACTED}; the database password is {REDACTED}."
    started = payloads[4]
    assert isinstance(started, ToolCallStarted)
    assert json.loads(started.arguments_json) == {"query": f"rotate {REDACTED} now", "n": 1}
    final = payloads[6]
    assert isinstance(final, FinalResponse)
    assert final.text == f"Done: your refreshToken is {REDACTED} and the API key was {REDACTED}."
    error = payloads[7]
    assert isinstance(error, RunError) and error.message == f"tool said: invalid key {REDACTED}"


def test_runs_do_not_share_remembered_secrets() -> None:
    redactor = Redactor()
    first = StepRecorder("r1", lambda _s: None, redactor)
    second = StepRecorder("r2", lambda _s: None, redactor)
    first.tool_finished(
        "c1", "vault", ToolOutcome(text='{"password": "run-one-secret"}'), time=NOW, duration=timedelta(0)
    )
    assert REDACTED in first.scrub_final("run-one-secret")
    assert second.scrub_final("run-one-secret") == "run-one-secret"


def test_a_truncated_result_reports_the_size_the_tool_returned() -> None:
    recorder, _ = _recorder(max_result_bytes=256)
    # Pretty-printed JSON with a secret: scrubbing re-serialises it compactly, which is much smaller.
    original = json.dumps({"password": "p" * 50, "rows": ["x" * 40] * 20}, indent=8)
    recorder.tool_finished("c1", "vault", ToolOutcome(text=original), time=NOW, duration=timedelta(0))
    finished = recorder.steps[-1].payload
    assert isinstance(finished, ToolCallFinished)
    assert finished.truncated
    assert finished.original_size_bytes == len(original.encode())
    assert f"[truncated: {len(original.encode())} bytes in all, 256 kept]" in finished.result_text
    assert "p" * 50 not in finished.result_text


def test_a_result_under_the_cap_keeps_its_text_and_original_size() -> None:
    recorder, _ = _recorder()
    original = json.dumps({"rows": [1, 2, 3], "token_count": 3}, indent=2)
    recorder.tool_finished("c1", "vault", ToolOutcome(text=original), time=NOW, duration=timedelta(0))
    finished = recorder.steps[-1].payload
    assert isinstance(finished, ToolCallFinished)
    assert finished.result_text == original  # nothing secret: not re-serialised
    assert finished.original_size_bytes == len(original.encode()) and not finished.truncated
