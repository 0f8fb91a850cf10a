from __future__ import annotations

import socket

from typer.testing import CliRunner, Result

from agentrun_cli.main import app
from tests.cli.fake_services import FakeServer

WIDE = {"COLUMNS": "220", "AGENTRUN_TOKEN": "", "AGENTRUN_TLS_CA": ""}


def invoke(runner: CliRunner, fake: FakeServer | None, *args: str, env: dict[str, str] | None = None) -> Result:
    targets = ["--runs-target", fake.target, "--execution-target", fake.target] if fake is not None else []
    result = runner.invoke(app, [*targets, *args], env={**WIDE, **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
