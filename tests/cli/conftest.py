from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from tests.cli.fake_services import FakeServer


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer().start()
    yield server
    server.stop()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()
