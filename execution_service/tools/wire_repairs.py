"""What third-party MCP servers send that the SDK's strict protocol types refuse, repaired or left out before the SDK
reads it, so that one odd tool or content block costs only itself, never the whole server.

The SDK validates a result as a whole: one tool in a `tools/list` answer without `"type"` in its inputSchema (many
servers omit it) made every tool of the server unusable, and one content block of a type the protocol does not
define made the whole tool result unusable. `RepairingReceiveStream` sits between the transport and the SDK's
session and changes, in the answers to our requests only:
- `tools/list`: an inputSchema without "type" gets `"type": "object"` (the protocol's one input type), a missing or
  non-object one becomes `{"type": "object"}`; a tool that the negotiated protocol version still refuses (e.g. a
  name that is not a string) is left out of the list, with a warning naming it and why; `outputSchema` is dropped:
  the SDK checks each result against it and threw the whole result (its text too) away when a server that declares
  one answered with text only, while agentrun hands structured content to the model as the server sent it;
- `tools/call`: a content block of an unknown type becomes a text block saying what it was; the other blocks stay.

It also reads messages the SDK's JSON parser refuses but Python's reads: lone UTF-16 surrogate escapes (what
JavaScript's JSON.stringify writes for a string cut inside an emoji) become U+FFFD. The SDK drops such a message, so
the call it answered waited for its whole timeout and then read as a timeout.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pydantic
from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCResponse, Tool, jsonrpc_message_adapter
from mcp_types.methods import validate_server_result
from mcp_types.version import LATEST_HANDSHAKE_VERSION

from execution_service.tools.stream_watch import ForwardingReceiveStream

logger = logging.getLogger(__name__)

# The content block types of the protocol versions this SDK speaks.
KNOWN_CONTENT_TYPES = frozenset({"text", "image", "audio", "resource", "resource_link"})
_DESCRIBED_CHARS = 300


class RepairingReceiveStream(ForwardingReceiveStream):
    """Forwards the transport's messages to the session, repairing answers as the module docstring says."""

    def __init__(self, inner: Any, server: str) -> None:
        super().__init__(inner)
        self._server = server
        self._version = LATEST_HANDSHAKE_VERSION

    async def receive(self) -> Any:
        message = await self._inner.receive()
        if isinstance(message, pydantic.ValidationError):
            message = self._readable(message)
        if isinstance(message, SessionMessage) and isinstance(message.message, JSONRPCResponse):
            self._repair(message.message.result)
        return message

    def _readable(self, error: pydantic.ValidationError) -> SessionMessage | pydantic.ValidationError:
        """The message the SDK could not parse, read by Python's JSON decoder with lone surrogates replaced; the
        error as it came when that does not make it a JSON-RPC message either."""
        raw = next((e.get("input") for e in error.errors() if e.get("type") == "json_invalid"), None)
        if not isinstance(raw, str):
            return error
        try:
            parsed = jsonrpc_message_adapter.validate_python(_without_lone_surrogates(json.loads(raw)), by_name=False)
        except ValueError:  # not JSON, or not a JSON-RPC message (pydantic.ValidationError)
            return error
        logger.warning(
            "MCP server %r sent a message with lone UTF-16 surrogates (invalid JSON text for the SDK); read with "
            "U+FFFD in their place",
            self._server,
        )
        return SessionMessage(parsed)

    def _repair(self, result: dict[str, Any]) -> None:
        if isinstance(result.get("protocolVersion"), str) and "serverInfo" in result:
            self._version = result["protocolVersion"]  # the initialize answer: what the session validates against
        tools = result.get("tools")
        if isinstance(tools, list):
            result["tools"] = [tool for tool in (self._repaired_tool(tool) for tool in tools) if tool is not None]
        content = result.get("content")
        if isinstance(content, list):
            result["content"] = [_known_block(block) for block in content]

    def _repaired_tool(self, tool: Any) -> Any:
        if isinstance(tool, dict):
            tool = {key: value for key, value in tool.items() if key != "outputSchema"}
            schema = tool.get("inputSchema")
            if not isinstance(schema, dict):
                tool = {**tool, "inputSchema": {"type": "object"}}
            elif "type" not in schema:
                tool = {**tool, "inputSchema": {"type": "object", **schema}}
        try:
            Tool.model_validate(tool, by_name=False)  # the SDK's own type, then the negotiated version's wire type
            validate_server_result("tools/list", self._version, {"tools": [tool]})
        except pydantic.ValidationError as exc:
            self._warn_left_out(tool, exc)
            return None
        except (KeyError, ValueError):
            return tool  # a protocol version the SDK has no wire type for: the SDK decides
        return tool

    def _warn_left_out(self, tool: Any, exc: pydantic.ValidationError) -> None:
        name = tool.get("name") if isinstance(tool, dict) else None
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        logger.warning(
            "MCP server %r: tool %s left out: the protocol (%s) refuses it: %s",
            self._server,
            json.dumps(name, default=str)[:_DESCRIBED_CHARS],
            self._version,
            problems,
        )


def _known_block(block: Any) -> Any:
    """A content block as is, or, for a type the protocol does not define, a text block that says what it was."""
    if not isinstance(block, dict) or block.get("type") in KNOWN_CONTENT_TYPES:
        return block
    kind = block.get("type")
    described = json.dumps(block, ensure_ascii=False, default=str)
    if len(described) > _DESCRIBED_CHARS:
        described = described[:_DESCRIBED_CHARS] + "..."
    return {"type": "text", "text": f"[content of type {json.dumps(kind)} that MCP does not define: {described}]"}


def _without_lone_surrogates(value: Any) -> Any:
    """`value` (decoded JSON) with each UTF-16 surrogate code point in its strings replaced by U+FFFD."""
    if isinstance(value, str):
        return _SURROGATES.sub("\ufffd", value)
    if isinstance(value, list):
        return [_without_lone_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_without_lone_surrogates(key): _without_lone_surrogates(item) for key, item in value.items()}
    return value


_SURROGATES = re.compile("[\ud800-\udfff]")
