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


def test_several_addresses_must_all_serve(fake: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    down = f"127.0.0.1:{free_port()}"
    assert main([fake.target, fake.target]) == 0
    assert main([fake.target, down, "--timeout", "1"]) == 1
    captured = capsys.readouterr()
    assert f"{fake.target}: SERVING" in captured.out and f"{down}: UNAVAILABLE" in captured.err


def test_wait_checks_again_until_the_server_serves(capsys: pytest.CaptureFixture[str]) -> None:
    """A service started in the background a moment ago: --wait gives it time instead of failing at once."""
    import threading
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2_grpc

    port = free_port()
    server = grpc.server(futures.ThreadPoolExecutor(2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    starter = threading.Timer(1.0, server.start)
    starter.start()
    try:
        assert main([f"127.0.0.1:{port}", "--timeout", "1", "--wait", "20"]) == 0
        assert capsys.readouterr().out.strip() == f"127.0.0.1:{port}: SERVING"
    finally:
        starter.cancel()
        server.stop(0)
