"""Extra `_meta` entries of the MCP tools/call requests made in the current context (set by the durable mode: the
call's idempotency key, docs/architecture.md "Durable mode")."""

from __future__ import annotations

from contextvars import ContextVar

# Merged into the request's `_meta`, beside the trace context (execution_service.tools.connection).
tool_request_meta: ContextVar[dict[str, str] | None] = ContextVar("tool_request_meta", default=None)

# The `_meta` key of a tool call's idempotency key: "<run id>:<call id>", the same on every attempt of that call.
IDEMPOTENCY_KEY = "agentrun/idempotency-key"
