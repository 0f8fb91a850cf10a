"""`python -m agentrun_cli.healthcheck ADDRESS`: exit 0 only on SERVING."""

from __future__ import annotations

import pytest

from agentrun_cli.healthcheck import main
from tests.cli.cli_helpers import free_port
from tests.cli.fake_services import FakeServer


def test_serving(fake: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([fake.target]) == 0
    assert capsys.readouterr().out.strip() == f"{fake.target}: SERVING"


def test_not_serving_and_unknown_service(fake: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([fake.target, "--service", "agentrun.Down"]) == 1
    assert "NOT_SERVING" in capsys.readouterr().err
    assert main([fake.target, "--service", "agentrun.Nope"]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err


def test_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{free_port()}"
    assert main([address, "--timeout", "2"]) == 1
    assert f"{address}: UNAVAILABLE" in capsys.readouterr().err
