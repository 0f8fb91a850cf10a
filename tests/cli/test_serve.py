"""Pieces of `agentrun serve` that need no running service."""

from __future__ import annotations

import asyncio

import pytest

from agentrun_cli.addresses import client_target
from agentrun_cli.commands.serve import _stop_all


@pytest.mark.parametrize(
    ("listen", "target"),
    [
        ("0.0.0.0:50051", "127.0.0.1:50051"),
        ("[::]:50051", "127.0.0.1:50051"),
        (":50051", "127.0.0.1:50051"),
        ("127.0.0.1:59051", "127.0.0.1:59051"),
        ("localhost:1", "localhost:1"),
        ("unix:/tmp/sock", "unix:/tmp/sock"),
    ],
)
def test_client_target(listen: str, target: str) -> None:
    assert client_target(listen) == target


async def test_stop_all_stops_the_last_started_first() -> None:
    stopped: list[str] = []

    async def server(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.append(name)

    tasks = [asyncio.create_task(server("runs")), asyncio.create_task(server("execution"))]
    await asyncio.sleep(0)
    await _stop_all(tasks)
    assert stopped == ["execution", "runs"]
