"""The real `mcp-server-time` from PyPI, run over stdio."""

from __future__ import annotations

import sys
from pathlib import Path

from mcp_test_helpers import FAST_BACKOFF, FAST_TIMEOUTS

from execution_service.tools.mcp_config import StdioServer
from execution_service.tools.pool import McpToolPool


def _time_server() -> StdioServer:
    script = Path(sys.executable).parent / "mcp-server-time"
    if script.exists():
        return StdioServer(name="time", command=str(script), args=("--local-timezone", "UTC"))
    return StdioServer(name="time", command=sys.executable, args=("-m", "mcp_server_time", "--local-timezone", "UTC"))


async def test_mcp_server_time_lists_and_answers() -> None:
    async with McpToolPool({"time": _time_server()}, backoff=FAST_BACKOFF, timeouts=FAST_TIMEOUTS) as pool:
        servers = await pool.list_servers()
        assert isinstance(servers["time"], list) and "get_current_time" in servers["time"]

        (tool,) = await pool.resolve(["time/get_current_time"])
        assert tool.exposed_name == "get_current_time"
        outcome = await pool.call(tool, {"timezone": "Europe/Paris"}, timeout_s=10)
        assert not outcome.is_error, outcome.text
        assert "Europe/Paris" in outcome.text
