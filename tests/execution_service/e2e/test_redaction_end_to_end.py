"""Redaction end to end with a model that paraphrases (the fake Gemini, scripted): a secret a tool returned and the
model then repeats in its own words never reaches the stream or the store."""

from __future__ import annotations

import json
from pathlib import Path

from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2

from tests.fakes.gemini_server import FakeFunctionCall, FakeResponse
from tests.support.stack import Stack, agent_source, running_stack, steps_of

CONFIG_SECRETS = ("hunter2-not-a-real-password", "sk-test-0123456789abcdef", "tok-test-abcdef")


async def _blobs(stack: Stack, events: list[ex.ExecuteAgentResponse]) -> tuple[bytes, run_pb2.Run]:
    stored = await stack.stored_run(events[0].run_started.run_id)
    return b"".join(e.SerializeToString() for e in events) + stored.SerializeToString(), stored


async def test_a_secret_the_model_repeats_in_prose_is_redacted_in_the_stream_and_the_store(tmp_path: Path) -> None:
    agents = {"leaky": agent_source(model="gemini-2.5-flash", tools=["test/secret_config", "test/echo"])}
    async with running_stack(tmp_path, agents) as stack:
        stack.gemini.add(
            FakeResponse(function_calls=[FakeFunctionCall("secret_config", {}, id="c1")]),
            FakeResponse(
                text=f"The service logs in as svc-billing with {CONFIG_SECRETS[0]}. Let me check the token.",
                function_calls=[FakeFunctionCall("echo", {"text": f"check {CONFIG_SECRETS[2]}"}, id="c2")],
            ),
            FakeResponse(
                text=(
                    f"Summary: the password of svc-billing is {CONFIG_SECRETS[0]}, its API key is "
                    f"{CONFIG_SECRETS[1]} and the nested token is {CONFIG_SECRETS[2]}."
                )
            ),
        )
        events = await stack.execute(agent_name="leaky", task="what are the billing credentials?")
        finished = events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_COMPLETED, finished.error
        blob, stored = await _blobs(stack, events)
        for secret in CONFIG_SECRETS:
            assert secret.encode() not in blob, secret
        # The model itself got the real result (redaction protects the record, not the conversation).
        assert CONFIG_SECRETS[0] in json.dumps(stack.gemini.requests[1].body)
        assert stored.final_response == finished.final_response
        assert stored.final_response == (
            "Summary: the password of svc-billing is [REDACTED], its API key is [REDACTED] and the nested token is "
            "[REDACTED]."
        )
        steps = steps_of(events)
        echo = next(s for s in steps if s.WhichOneof("payload") == "tool_call" and s.tool_call.call_id == "c2")
        assert json.loads(echo.tool_call.arguments_json) == {"text": "check [REDACTED]"}
        texts = [s.model_call.text for s in steps if s.WhichOneof("payload") == "model_call"]
        assert "svc-billing with [REDACTED]." in texts[1]


async def test_double_encoded_json_from_a_tool_and_the_answer_that_repeats_it(tmp_path: Path) -> None:
    agents = {"echoer": agent_source(model="gemini-2.5-flash", tools=["test/echo"])}
    payload = json.dumps({"refreshToken": "refresh-secret-456", "user": "alice", "token_count": 7})
    async with running_stack(tmp_path, agents) as stack:
        stack.gemini.add(
            FakeResponse(function_calls=[FakeFunctionCall("echo", {"text": payload}, id="c1")]),
            FakeResponse(text="I checked: the refreshToken is refresh-secret-456 (user alice)."),
        )
        events = await stack.execute(agent_name="echoer", task="echo the session")
        assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        blob, stored = await _blobs(stack, events)
        assert b"refresh-secret-456" not in blob
        steps = steps_of(events)
        call = next(s.tool_call for s in steps if s.WhichOneof("payload") == "tool_call")
        arguments = json.loads(call.arguments_json)
        assert json.loads(arguments["text"]) == {"refreshToken": "[REDACTED]", "user": "alice", "token_count": 7}
        result = next(s.tool_result for s in steps if s.WhichOneof("payload") == "tool_result")
        assert "alice" in result.result_text and "[REDACTED]" in result.result_text
        assert stored.final_response == "I checked: the refreshToken is [REDACTED] (user alice)."
