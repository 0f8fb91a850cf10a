"""An execution database that cannot be used, tried as a new user would with the real command as a subprocess: one
log line naming the URL (password masked), the cause and the fix, exit code 4 (docs/configuration.md), never a
traceback, as RunsService reports its own database."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.runs_service.test_database_problems import _closed_port, _command, _error_line

pytestmark = pytest.mark.postgres

PASSWORD = "hunter2-not-echoed"


def _execution(tmp_path: Path, url: str) -> tuple[int, str, str]:
    done = _command(tmp_path, "--execution-database-url", url, "--address", "127.0.0.1:0", module="execution_service")
    return done.returncode, _error_line(done), done.stdout + done.stderr


def test_a_missing_execution_database_is_exit_4_naming_createdb(tmp_path: Path, database_url: str) -> None:
    name = f"agentrun_missing_{uuid.uuid4().hex[:10]}"
    url = make_url(database_url).set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    code, line, output = _execution(tmp_path, url)
    assert code == 4, output
    assert "refusing to start: cannot use the execution database postgresql://" in line, line
    assert f'the database "{name}" does not exist' in line and "create it with `createdb " in line, line
    assert name in line.split("createdb", 1)[1], line
    assert "--create-database" not in line  # ExecutionService has no such flag


def test_an_unreachable_execution_database_is_exit_4_naming_the_address_without_the_password(tmp_path: Path) -> None:
    port = _closed_port()
    url = f"postgresql://agentrun:{PASSWORD}@127.0.0.1:{port}/agentrun"
    started = time.monotonic()
    code, line, output = _execution(tmp_path, url)
    assert code == 4, output
    assert f"cannot use the execution database postgresql://agentrun:***@127.0.0.1:{port}/agentrun" in line, line
    assert f"no PostgreSQL server answers at 127.0.0.1:{port}" in line, line
    assert "AGENTRUN_EXECUTION_DATABASE_URL / --execution-database-url" in line, line
    assert PASSWORD not in output
    assert time.monotonic() - started < 60
