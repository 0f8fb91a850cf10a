"""Helpers for the MCP tool tests: where the test MCP server lives, fast reconnect settings, pid and port waits."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from agentrun_core.backoff import Backoff
from execution_service.tools.connection import ConnectionTimeouts
from execution_service.tools.mcp_config import HttpServer, StdioServer

TEST_SERVER = Path(__file__).resolve().parents[2] / "fixtures" / "mcp_test_server.py"

# Fast reconnects and short bounds so failure tests finish quickly.
FAST_BACKOFF = Backoff(initial_s=0.05, multiplier=2.0, max_s=0.5, jitter=0.2)
FAST_TIMEOUTS = ConnectionTimeouts(connect_s=20.0, call_grace_s=2.0, health_check_s=1.5, shutdown_s=8.0)


def stdio_test_server(name: str = "test", pid_file: Path | None = None) -> StdioServer:
    env = {"MCP_TEST_PID_FILE": str(pid_file)} if pid_file is not None else {}
    return StdioServer(name=name, command=sys.executable, args=(str(TEST_SERVER),), env=env)


def read_pid(pid_file: Path, timeout_s: float = 10.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            text = pid_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            text = ""
        if text:
            return int(text)
        time.sleep(0.02)
    raise AssertionError(f"the test server wrote no pid to {pid_file} within {timeout_s}s")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_accepting(port: int, process: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the HTTP test server exited early with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"the HTTP test server did not accept connections on port {port} within {timeout_s}s")


def http_test_server(url: str, name: str = "web") -> HttpServer:
    return HttpServer(name=name, url=url)


def forget_pid(pid_file: Path) -> None:
    """Removes the pid file so that read_pid waits for the next server process."""
    pid_file.unlink(missing_ok=True)


class HttpTestServer:
    """The test MCP server as a streamable HTTP subprocess on a fixed free local port (restartable)."""

    def __init__(self, *, json_response: bool = False) -> None:
        """`json_response`: the server answers each request with one JSON body instead of an SSE stream."""
        self.json_response = json_response
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, str(TEST_SERVER), "--http", str(self.port), *(["--json-response"] * self.json_response)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until_accepting(self.port, self._process)

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=5)

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
