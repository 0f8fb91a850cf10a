from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from tests.cli.fake_services import FakeServer

# A real RunsService on each database backend, for the commands that are tested against one (export, delete).
from tests.runs_service.api.conftest import runs  # noqa: F401  # isort: skip
from tests.runs_service.conftest import _postgres_template, _sqlite_template, db_url, pg_server  # noqa: F401  # isort: skip


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer().start()
    yield server
    server.stop()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()
