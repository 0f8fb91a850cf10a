"""Turns an MCP `CallToolResult` into a `ToolOutcome`: text parts joined, other parts summarised as text; the images,
audio and documents among them that the model can read are kept for it too (`ToolOutcome.media`), up to
MAX_MEDIA_BYTES per call. A text resource sent as a blob (text/*) is decoded and joined as text."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from dataclasses import dataclass, field

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
from execution_service.model.base import InlineMedia
from execution_service.tools.base import ToolOutcome

_NO_ERROR_TEXT = "the tool reported an error without a message"

# The media types Gemini reads inline (images, audio, PDF); others stay summaries in the text.
MODEL_MEDIA_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/webp",
        "image/heic",
        "image/heif",
        "audio/wav",
        "audio/x-wav",
        "audio/mp3",
        "audio/mpeg",
        "audio/aiff",
        "audio/aac",
        "audio/ogg",
        "audio/flac",
        "application/pdf",
    }
)
# The media one call may send the model, decoded, and the media of one turn's calls together (a request to Gemini
# carries at most 20 MB, base64 included): a turn of n calls gives each min(MAX_MEDIA_BYTES, MAX_TURN_MEDIA_BYTES / n).
MAX_MEDIA_BYTES = 4 * 1024 * 1024
MAX_TURN_MEDIA_BYTES = 12 * 1024 * 1024
_SENT = ", sent to the model]"


def outcome_from_result(result: CallToolResult) -> ToolOutcome:
    """`is_error` results become FAILED / TOOL_ERROR outcomes carrying the tool's own text.

    Structured content goes to `structured_json` (compact JSON); it is also the text when the tool sent no content.
    """
    content = ResultContent()
    for block in result.content:
        content.add(block)
    text = "\n".join(content.texts)
    structured = "" if result.structured_content is None else compact_json(result.structured_content)
    if not text and structured:
        text = structured
    media = tuple(content.media)
    if result.is_error:
        return ToolOutcome(
            text=text or _NO_ERROR_TEXT,
            structured_json=structured,
            is_error=True,
            status=ToolCallStatus.FAILED,
            error_reason=ErrorReason.TOOL_ERROR,
            media=media,
        )
    return ToolOutcome(text=text, structured_json=structured, media=media)


@dataclass
class ResultContent:
    """A result's blocks, as the text that records them and the media the model can read."""

    texts: list[str] = field(default_factory=list)
    media: list[InlineMedia] = field(default_factory=list)
    media_bytes: int = 0

    def add(self, block: ContentBlock) -> None:
        match block:
            case TextContent():
                self.texts.append(block.text)
            case ImageContent():
                self.texts.append(self._media("image", block.mime_type, block.data))
            case AudioContent():
                self.texts.append(self._media("audio", block.mime_type, block.data))
            case EmbeddedResource():
                self.texts.append(self._resource(block.resource))
            case ResourceLink():
                mime = f" {block.mime_type}" if block.mime_type else ""
                self.texts.append(f"[resource link {block.uri}{mime}: {block.name}]")
            case _:  # a content type newer than this code
                self.texts.append(f"[{getattr(block, 'type', type(block).__name__)} content]")

    def _resource(self, resource: TextResourceContents | BlobResourceContents) -> str:
        if isinstance(resource, TextResourceContents):
            return resource.text
        mime = (resource.mime_type or "application/octet-stream").lower()
        if mime.startswith("text/"):
            decoded = _decoded(resource.blob)
            if decoded is not None:
                return decoded.decode("utf-8", errors="replace")
        return self._media(f"resource {resource.uri}", mime, resource.blob)

    def _media(self, what: str, mime_type: str, data: str) -> str:
        """The summary that records a media block; the block is kept for the model when it can read it."""
        summary = f"[{what} {mime_type} {base64_size(data)} bytes"
        essence = mime_type.partition(";")[0].strip().lower()  # "image/png; x=y" is image/png
        if essence not in MODEL_MEDIA_TYPES:
            return summary + ": not a type the model reads]"
        decoded = _decoded(data)
        if not decoded:
            return summary + ": empty or not base64, not sent to the model]"
        if self.media_bytes + len(decoded) > MAX_MEDIA_BYTES:
            return summary + f": over the {_mib(MAX_MEDIA_BYTES)} of media a call may send the model]"
        self.media.append(InlineMedia(essence, decoded))
        self.media_bytes += len(decoded)
        return summary + _SENT


def media_share(calls_in_turn: int) -> int:
    """The media one of a turn's `calls_in_turn` calls may send the model."""
    return min(MAX_MEDIA_BYTES, MAX_TURN_MEDIA_BYTES // max(1, calls_in_turn))


def with_media_within(outcome: ToolOutcome, max_bytes: int) -> ToolOutcome:
    """The outcome with the media past the first `max_bytes` (a call's share of its turn's) withheld from the model,
    each one's summary saying so: the n-th media of an outcome is the one its n-th "sent to the model" summary names."""
    kept: list[InlineMedia] = []
    total = 0
    withheld: set[int] = set()
    for index, media in enumerate(outcome.media):
        if total + len(media.data) <= max_bytes:
            kept.append(media)
            total += len(media.data)
        else:
            withheld.add(index)
    if not withheld:
        return outcome
    why = f"over the {_mib(max_bytes)} of media each call of this turn may send the model"
    pieces = outcome.text.split(_SENT)
    text = pieces[0]
    for index, piece in enumerate(pieces[1:]):
        text += (f": {why}]" if index in withheld else _SENT) + piece
    return dataclasses.replace(outcome, text=text, media=tuple(kept))


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB"


def _decoded(data: str) -> bytes | None:
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        return None


def base64_size(data: str) -> int:
    """Decoded size of base64 text, without decoding it."""
    stripped = "".join(data.split())
    padding = len(stripped) - len(stripped.rstrip("="))
    return max(0, len(stripped) * 3 // 4 - padding)


def compact_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
