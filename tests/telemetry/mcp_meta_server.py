"""A stdio MCP server whose tool answers with the W3C traceparent it received in the request's `_meta`."""

from __future__ import annotations

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("agentrun-trace-meta-server")


@server.tool()
def trace_meta(ctx: Context) -> str:
    """Returns the traceparent of this tools/call request ("" when the client sent none)."""
    meta = ctx.request_context.meta or {}
    return str(meta.get("traceparent", ""))


if __name__ == "__main__":
    server.run()
