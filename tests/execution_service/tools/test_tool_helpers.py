"""The pure pieces of the MCP tool layer: exposed names, backoff, argument checks, result conversion."""

from __future__ import annotations

import base64
import pickle

import pytest
from mcp.types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)

from agentrun_core.backoff import Backoff
from agentrun_core.domain import ErrorReason, ToolCallStatus
from execution_service.model.base import InlineMedia
from execution_service.tools.arguments import ArgumentValidator
from execution_service.tools.base import ToolOutcome
from execution_service.tools.connection import reconnect_delay_s
from execution_service.tools.naming import FUNCTION_NAME, exposed_names, sanitize_function_name
from execution_service.tools.results import (
    MAX_MEDIA_BYTES,
    MAX_TURN_MEDIA_BYTES,
    base64_size,
    media_share,
    outcome_from_result,
    with_media_within,
)

# -- names -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("get_time", "get_time"),
        ("get time/now", "get_time_now"),
        ("1st", "_1st"),
        ("", "_"),
        ("wörd", "w_rd"),
        ("a.b-c:d", "a.b-c_d"),
        ("x" * 100, "x" * 64),
    ],
)
def test_sanitize_function_name(raw: str, expected: str) -> None:
    assert sanitize_function_name(raw) == expected
    assert FUNCTION_NAME.match(sanitize_function_name(raw))


def test_exposed_names_prefix_only_shared_names() -> None:
    names = exposed_names([("time", "now"), ("git", "status"), ("clock", "now"), ("git", "log")])
    assert names == ["time_now", "status", "clock_now", "log"]


def test_exposed_names_stay_unique_after_sanitising_and_truncating() -> None:
    long = "t" * 70
    names = exposed_names([("s", "a b"), ("s", "a_b"), ("s", long), ("s", long + "x")])
    assert len(set(names)) == 4
    assert all(FUNCTION_NAME.match(name) for name in names)
    assert names[:2] == ["a_b", "a_b_2"]


# -- backoff ---------------------------------------------------------------------------------------------------------


def test_reconnect_is_immediate_once_then_grows_is_capped_and_jittered() -> None:
    no_jitter = Backoff(initial_s=0.5, multiplier=2, max_s=4, jitter=0)
    assert [reconnect_delay_s(no_jitter, n) for n in range(8)] == [0, 0, 0.5, 1, 2, 4, 4, 4]
    assert reconnect_delay_s(no_jitter, 10_000) == 4

    half = Backoff(initial_s=1, multiplier=2, max_s=60, jitter=0.5, random=lambda: 1.0)
    assert reconnect_delay_s(half, 4) == 2.0  # 4 s scaled by (1 - 0.5)
    with pytest.raises(ValueError):
        Backoff(multiplier=0.5)


# -- arguments -------------------------------------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}


def test_argument_problems_name_the_path() -> None:
    validator = ArgumentValidator()
    assert validator.problems("s", "add", SCHEMA, {"a": 1, "b": 2}) == []
    problems = validator.problems("s", "add", SCHEMA, {"a": "x"})
    assert problems == ["at $: 'b' is a required property", "at $.a: 'x' is not of type 'integer'"]
    assert validator.problems("s", "add", SCHEMA, ["not", "a", "dict"]) == ["arguments must be a JSON object, got list"]


def test_invalid_schema_is_not_checked_locally() -> None:
    assert ArgumentValidator().problems("s", "odd", {"type": "no-such-type"}, {"a": 1}) == []


# -- results ---------------------------------------------------------------------------------------------------------


def test_result_parts_become_text() -> None:
    png = base64.b64encode(b"\x89PNG" + bytes(1230)).decode()
    result = CallToolResult(
        content=[
            TextContent(text="first"),
            ImageContent(data=png, mime_type="image/png"),
            AudioContent(data=base64.b64encode(b"abcde").decode(), mime_type="audio/wav"),
            EmbeddedResource(resource=TextResourceContents(uri="file:///a.txt", text="embedded text")),
            EmbeddedResource(resource=BlobResourceContents(uri="file:///b.bin", blob=base64.b64encode(b"12").decode())),
            ResourceLink(uri="file:///c.md", name="c.md", mime_type="text/markdown"),
            EmbeddedResource(
                resource=BlobResourceContents(
                    uri="file:///d.txt", mime_type="text/plain", blob=base64.b64encode("blob text é".encode()).decode()
                )
            ),
            ImageContent(data=base64.b64encode(b"II*\x00").decode(), mime_type="image/tiff"),
            ImageContent(data="", mime_type="image/png"),
            ImageContent(data=base64.b64encode(b"RIFF").decode(), mime_type="image/webp; q=1"),
        ],
        structured_content={"k": [1, 2], "s": "é"},
    )
    outcome = outcome_from_result(result)
    assert outcome.text.split("\n") == [
        "first",
        "[image image/png 1234 bytes, sent to the model]",
        "[audio audio/wav 5 bytes, sent to the model]",
        "embedded text",
        "[resource file:///b.bin application/octet-stream 2 bytes: not a type the model reads]",
        "[resource link file:///c.md text/markdown: c.md]",
        "blob text é",
        "[image image/tiff 4 bytes: not a type the model reads]",
        "[image image/png 0 bytes: empty or not base64, not sent to the model]",
        "[image image/webp; q=1 4 bytes, sent to the model]",
    ]
    assert outcome.media == (
        InlineMedia("image/png", b"\x89PNG" + bytes(1230)),
        InlineMedia("audio/wav", b"abcde"),
        InlineMedia("image/webp", b"RIFF"),
    )
    assert outcome.structured_json == '{"k":[1,2],"s":"é"}'
    assert not outcome.is_error and outcome.status is ToolCallStatus.SUCCEEDED


def test_media_over_the_per_call_limit_stay_summaries() -> None:
    big = bytes(MAX_MEDIA_BYTES - 10)
    result = CallToolResult(
        content=[
            ImageContent(data=base64.b64encode(big).decode(), mime_type="image/jpeg"),
            ImageContent(data=base64.b64encode(bytes(11)).decode(), mime_type="image/jpeg"),
            ImageContent(data=base64.b64encode(bytes(10)).decode(), mime_type="IMAGE/JPEG"),
        ]
    )
    outcome = outcome_from_result(result)
    assert (
        outcome.text.split("\n")[1] == "[image image/jpeg 11 bytes: over the 4 MiB of media a call may send the model]"
    )
    assert [(m.mime_type, len(m.data)) for m in outcome.media] == [("image/jpeg", len(big)), ("image/jpeg", 10)]


def test_the_calls_of_a_turn_share_its_media_budget() -> None:
    assert media_share(1) == media_share(3) == MAX_MEDIA_BYTES
    assert media_share(6) == MAX_TURN_MEDIA_BYTES // 6 < MAX_MEDIA_BYTES

    def png(size: int) -> ImageContent:
        return ImageContent(data=base64.b64encode(bytes(size)).decode(), mime_type="image/png")

    outcome = outcome_from_result(
        CallToolResult(content=[png(100), TextContent(text="between"), png(300), png(50), TextContent(text="end")])
    )
    capped = with_media_within(outcome, 160)
    assert capped.text.split("\n") == [
        "[image image/png 100 bytes, sent to the model]",
        "between",
        "[image image/png 300 bytes: over the 0.000152588 MiB of media each call of this turn may send the model]",
        "[image image/png 50 bytes, sent to the model]",
        "end",
    ]
    assert [len(m.data) for m in capped.media] == [100, 50]
    assert with_media_within(outcome, 450) is outcome


def test_a_checkpointed_outcome_of_the_version_before_media_unpickles() -> None:
    """A durable run's tool outcome pickled before `media` existed (its state: the five fields then) loads."""
    old = ToolOutcome.__new__(ToolOutcome)
    old.__setstate__(["done", "", False, ToolCallStatus.SUCCEEDED, None])
    assert old == ToolOutcome("done")
    kept = ToolOutcome("pic", media=(InlineMedia("image/png", b"x"),))
    assert pickle.loads(pickle.dumps(kept)) == kept


def test_error_result_and_structured_only_result() -> None:
    failed = outcome_from_result(CallToolResult(content=[TextContent(text="bad input")], is_error=True))
    assert (failed.text, failed.is_error, failed.status, failed.error_reason) == (
        "bad input",
        True,
        ToolCallStatus.FAILED,
        ErrorReason.TOOL_ERROR,
    )
    silent = outcome_from_result(CallToolResult(content=[], is_error=True))
    assert silent.text and silent.is_error

    structured = outcome_from_result(CallToolResult(content=[], structured_content={"n": 1}))
    assert (structured.text, structured.structured_json) == ('{"n":1}', '{"n":1}')


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 1000])
def test_base64_size(size: int) -> None:
    assert base64_size(base64.b64encode(bytes(size)).decode()) == size


# -- task-augmented tools (MCP 2025-11-25) ---------------------------------------------------------------------------


def test_tools_that_require_task_augmentation_are_recognised() -> None:
    from mcp.types import Tool, ToolExecution

    from execution_service.tools.pool import _needs_task_augmentation

    schema = {"type": "object", "properties": {}}
    required = Tool(name="research", input_schema=schema, execution=ToolExecution(task_support="required"))
    optional = Tool(name="maybe", input_schema=schema, execution=ToolExecution(task_support="optional"))
    plain = Tool(name="echo", input_schema=schema)
    assert _needs_task_augmentation(required)
    assert not _needs_task_augmentation(optional) and not _needs_task_augmentation(plain)
