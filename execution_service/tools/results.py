"""Turns an MCP `CallToolResult` into a `ToolOutcome`: text parts joined, other parts summarised as text."""

from __future__ import annotations

import json

from mcp.types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    ContentBlock,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)

from agentrun_core.domain import ErrorReason, ToolCallStatus
from execution_service.tools.base import ToolOutcome

_NO_ERROR_TEXT = "the tool reported an error without a message"


def outcome_from_result(result: CallToolResult) -> ToolOutcome:
    """`is_error` results become FAILED / TOOL_ERROR outcomes carrying the tool's own text.

    Structured content goes to `structured_json` (compact JSON); it is also the text when the tool sent no content.
    """
    text = content_text(result.content)
    structured = "" if result.structured_content is None else compact_json(result.structured_content)
    if not text and structured:
        text = structured
    if result.is_error:
        return ToolOutcome(
            text=text or _NO_ERROR_TEXT,
            structured_json=structured,
            is_error=True,
            status=ToolCallStatus.FAILED,
            error_reason=ErrorReason.TOOL_ERROR,
        )
    return ToolOutcome(text=text, structured_json=structured)


def content_text(blocks: list[ContentBlock]) -> str:
    return "\n".join(block_text(block) for block in blocks)


def block_text(block: ContentBlock) -> str:
    match block:
        case TextContent():
            return block.text
        case ImageContent():
            return f"[image {block.mime_type} {base64_size(block.data)} bytes]"
        case AudioContent():
            return f"[audio {block.mime_type} {base64_size(block.data)} bytes]"
        case EmbeddedResource():
            return _resource_text(block.resource)
        case ResourceLink():
            mime = f" {block.mime_type}" if block.mime_type else ""
            return f"[resource link {block.uri}{mime}: {block.name}]"
        case _:  # a content type newer than this code
            return f"[{getattr(block, 'type', type(block).__name__)} content]"


def _resource_text(resource: TextResourceContents | BlobResourceContents) -> str:
    if isinstance(resource, TextResourceContents):
        return resource.text
    mime = resource.mime_type or "application/octet-stream"
    return f"[resource {resource.uri} {mime} {base64_size(resource.blob)} bytes]"


def base64_size(data: str) -> int:
    """Decoded size of base64 text, without decoding it."""
    stripped = "".join(data.split())
    padding = len(stripped) - len(stripped.rstrip("="))
    return max(0, len(stripped) * 3 // 4 - padding)


def compact_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
