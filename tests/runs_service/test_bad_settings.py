"""Bad settings and unusable databases, tried through the real commands (subprocesses): each is one line saying
what is wrong, with the exit code docs/configuration.md documents (2: a setting; 4: the database), never a
traceback, and a secret is never echoed."""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runs_service.storage import migrate

_LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING) ")


def _run(tmp_path: Path, argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AGENTRUN_AUTH": "off",
        "AGENTRUN_LOG_FORMAT": "text",
        "AGENTRUN_DATA_DIR": str(tmp_path / "data"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", *argv],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )


def _one_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    """The command failed with `code`, saying why in exactly one line (besides INFO/WARNING logs), no traceback."""
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip() and not _LOG_LINE.match(line)]
    assert len(lines) == 1, output
    assert done.returncode == code, output
    return lines[0]


RUNS = ["runs_service", "--address", "127.0.0.1:0", "--migrate"]


def test_a_page_token_secret_too_short_is_exit_2_and_never_echoed(tmp_path: Path) -> None:
    line = _one_line(_run(tmp_path, RUNS, AGENTRUN_PAGE_TOKEN_SECRET="sesame-77"), 2)
    assert "AGENTRUN_PAGE_TOKEN_SECRET must be at least 16 bytes, got 9" in line, line
    assert "sesame" not in line


def test_a_page_token_secret_file_too_short_is_exit_2_naming_the_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "data" / "page_token_secret"
    secret_file.parent.mkdir()
    secret_file.write_text("tiny\n")
    line = _one_line(_run(tmp_path, RUNS), 2)
    assert f"the page token secret in {secret_file} must be at least 16 bytes, got 4" in line, line
    assert "tiny" not in line


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AGENTRUN_RETENTION", "99999999d"),
        ("AGENTRUN_RETENTION", "99999999999999999999999999999999999999w"),
        ("AGENTRUN_RETENTION_RULES", "agent:x=99999999d"),
    ],
)
def test_a_retention_period_that_overflows_is_exit_2(tmp_path: Path, variable: str, value: str) -> None:
    line = _one_line(_run(tmp_path, RUNS, **{variable: value}), 2)
    assert line.startswith(f"agentrun-runs-service: {variable} ") and "at most 36500d" in line, line


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (["runs_service", "--address", "127.0.0.1:70000"], {}, "'127.0.0.1:70000'"),
        (["runs_service"], {"AGENTRUN_RUNS_ADDRESS": "127.0.0.1:-1"}, "AGENTRUN_RUNS_ADDRESS"),
        (["execution_service"], {"AGENTRUN_EXECUTION_ADDRESS": "127.0.0.1:65536"}, "AGENTRUN_EXECUTION_ADDRESS"),
        (["agentrun_cli", "serve", "runs", "--runs-address", "[::1]:99999"], {}, "'[::1]:99999'"),
    ],
)
def test_a_port_outside_0_to_65535_is_exit_2(tmp_path: Path, argv: list[str], env: dict[str, str], named: str) -> None:
    line = _one_line(_run(tmp_path, argv, **env), 2)
    assert "must be HOST:PORT with a port from 0 to 65535" in line and named in line, line


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["runs_service", "--address", "127.0.0.1:70000"], "--address"),
        (["agentrun_cli", "serve", "runs", "--runs-address", "nowhere"], "--runs-address"),
        (["agentrun_cli", "serve", "execution", "--execution-address", "127.0.0.1:70000"], "--execution-address"),
        (["execution_service", "--runs-service", "127.0.0.1:0"], "--runs-service"),
        (["execution_service", "--execution-database-url", "sqlite:///x.db"], "--execution-database-url"),
    ],
)
def test_a_bad_flag_is_named_by_its_flag(tmp_path: Path, argv: list[str], flag: str) -> None:
    """Not by the settings field it sets (`listen_address must be ...` meant nothing to a user who typed a flag)."""
    line = _one_line(_run(tmp_path, argv), 2)
    assert f"{flag} must be " in line and "listen_address" not in line, line


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (["agentrun_cli", "--runs-target", "localhost:99999", "runs", "list"], {}, "--runs-target"),
        (["agentrun_cli", "agents", "list"], {"AGENTRUN_EXECUTION_TARGET": "[::1]:0"}, "AGENTRUN_EXECUTION_TARGET"),
        (["execution_service"], {"AGENTRUN_RUNS_SERVICE_TARGET": "127.0.0.1:65536"}, "AGENTRUN_RUNS_SERVICE_TARGET"),
    ],
)
def test_a_target_port_outside_1_to_65535_is_exit_2(
    tmp_path: Path, argv: list[str], env: dict[str, str], named: str
) -> None:
    """gRPC itself would wrap port 99999 to 34463 and call whatever listens there."""
    line = _one_line(_run(tmp_path, argv, **env), 2)
    assert f"{named} must be HOST:PORT with a port from 1 to 65535" in line and "got '" in line, line


@pytest.mark.parametrize("since", ["99999999d", "1e5d", "soon"])
def test_runs_stats_with_a_bad_since_is_exit_2(tmp_path: Path, since: str) -> None:
    line = _one_line(_run(tmp_path, ["agentrun_cli", "runs", "stats", "--since", since]), 2)
    assert line.startswith("error: --since must be") and repr(since) in line, line


@pytest.mark.parametrize("command", [[], ["migrate"]])
def test_a_sqlite_file_that_is_not_a_database_is_exit_4(tmp_path: Path, command: list[str]) -> None:
    not_a_database = tmp_path / "notes.db"
    not_a_database.write_text("these are notes, not a database\n" * 100)
    url = f"sqlite:///{not_a_database}"
    line = _one_line(_run(tmp_path, ["runs_service", *command, "--address", "127.0.0.1:0", "--database-url", url]), 4)
    assert f"{not_a_database} is not a SQLite database" in line, line


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port whose server accepts connections and never answers (as Redis does to PostgreSQL's first message)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            held.append(client)

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()
        for client in held:
            client.close()


@pytest.mark.parametrize("command", [[], ["migrate"]])
def test_a_port_that_does_not_speak_postgresql_is_exit_4(
    tmp_path: Path, silent_server: int, command: list[str]
) -> None:
    url = f"postgresql+psycopg://u@127.0.0.1:{silent_server}/db?connect_timeout=2"
    line = _one_line(_run(tmp_path, ["runs_service", *command, "--address", "127.0.0.1:0", "--database-url", url]), 4)
    assert f"nothing answered as PostgreSQL at 127.0.0.1:{silent_server} within the connect timeout" in line, line


@pytest.mark.parametrize("value", ["0", "1001"])
def test_an_outbox_batch_cap_outside_1_to_1000_is_exit_2(tmp_path: Path, value: str) -> None:
    line = _one_line(_run(tmp_path, ["execution_service"], AGENTRUN_OUTBOX_BATCH_RECORDS=value), 2)
    assert line.startswith("agentrun-execution-service: AGENTRUN_OUTBOX_BATCH_RECORDS must be"), line


def test_downgrade_without_a_revision_is_exit_2_and_drops_nothing(tmp_path: Path) -> None:
    """Before: `downgrade` alone went down to base, dropping every table and every stored run."""
    database = tmp_path / "runs.db"
    url = f"sqlite:///{database}"
    migrated = _run(tmp_path, ["runs_service", "migrate", "--database-url", url])
    assert migrated.returncode == 0, migrated.stderr
    line = _one_line(_run(tmp_path, ["runs_service", "downgrade", "--database-url", url]), 2)
    assert "downgrade needs --revision" in line, line
    assert (
        f"--revision {migrate.revision_before_head()}" in line
        and "`--revision base` drops every table and every stored run" in line
    ), line
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "run_steps", "alembic_version"} <= tables


def _migrated(tmp_path: Path, revision: str = "head") -> str:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    migrated = _run(tmp_path, ["runs_service", "migrate", "--database-url", url, "--revision", revision])
    assert migrated.returncode == 0, migrated.stderr
    return url


def _revision(tmp_path: Path) -> str:
    with sqlite3.connect(tmp_path / "runs.db") as connection:
        return str(connection.execute("SELECT version_num FROM alembic_version").fetchone()[0])


@pytest.mark.parametrize(("command", "revision"), [("migrate", "zzz"), ("downgrade", "9999")])
def test_a_revision_this_build_does_not_have_is_exit_2_naming_the_revisions_it_has(
    tmp_path: Path, command: str, revision: str
) -> None:
    """Before: a 279-line traceback ending `CommandError: Can't locate revision identified by 'zzz'`, exit 1."""
    url = _migrated(tmp_path)
    line = _one_line(_run(tmp_path, ["runs_service", command, "--database-url", url, "--revision", revision]), 2)
    assert f"--revision {revision}: Can't locate revision identified by '{revision}'" in line, line
    assert "this build's revisions are 0001, " in line and f"{migrate.head_revision()} (the newest" in line, line


def test_downgrade_to_a_newer_revision_is_exit_2_naming_the_current_one(tmp_path: Path) -> None:
    """Before: a traceback ending `CommandError: Destination 0016 is not a valid downgrade target`."""
    before = migrate.revision_before_head()
    url = _migrated(tmp_path, before)
    head = migrate.head_revision()
    line = _one_line(_run(tmp_path, ["runs_service", "downgrade", "--database-url", url, "--revision", head]), 2)
    assert f"the database is at revision {before}, older than {head}; downgrade only goes down" in line, line
    assert f"`agentrun-runs-service migrate --revision {head}`" in line, line


def test_migrate_to_an_older_revision_is_exit_2_not_a_silent_success(tmp_path: Path) -> None:
    """Before: "database migrated ... revision 0001", exit 0, while the schema stayed at the newest revision."""
    url = _migrated(tmp_path)
    head = migrate.head_revision()
    line = _one_line(_run(tmp_path, ["runs_service", "migrate", "--database-url", url, "--revision", "0001"]), 2)
    assert f"the database is at revision {head}, newer than 0001; migrate only goes up" in line, line
    assert "`agentrun-runs-service downgrade --revision 0001`" in line, line
    assert _revision(tmp_path) == head


def test_downgrade_of_a_data_dir_without_a_database_creates_nothing(tmp_path: Path) -> None:
    """Before: a traceback, and an empty runs.db left behind."""
    data = tmp_path / "empty"
    data.mkdir()
    line = _one_line(_run(tmp_path, ["runs_service", "downgrade", "--data-dir", str(data), "--revision", "0015"]), 4)
    assert f"{data / 'runs.db'} does not exist, so there is nothing to downgrade" in line, line
    assert not (data / "runs.db").exists()


def test_downgrade_without_a_revision_suggests_one_older_than_the_database(tmp_path: Path) -> None:
    """Before: it named the revision before this build's newest, whatever the database was at."""
    url = _migrated(tmp_path, "0007")
    line = _one_line(_run(tmp_path, ["runs_service", "downgrade", "--database-url", url]), 2)
    assert "e.g. --revision 0006, the one before the database's current 0007" in line, line


def test_downgrade_without_a_revision_of_a_database_a_newer_build_migrated_is_exit_3(tmp_path: Path) -> None:
    """Before: it suggested `--revision <this build's second newest>`, which this build cannot do."""
    url = _migrated(tmp_path)
    with sqlite3.connect(tmp_path / "runs.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
    line = _one_line(_run(tmp_path, ["runs_service", "downgrade", "--database-url", url]), 3)
    assert "is at schema revision 9999, newer than this build knows" in line, line


@pytest.mark.parametrize(
    ("argv", "program"),
    [
        (RUNS, "agentrun-runs-service"),
        (["runs_service", "migrate"], "agentrun-runs-service"),
        (["execution_service", "--address", "127.0.0.1:0"], "agentrun-execution-service"),
        (["agentrun_cli", "serve", "runs", "--runs-address", "127.0.0.1:0"], "agentrun"),
    ],
)
def test_a_data_dir_that_cannot_be_created_is_exit_2_naming_the_setting(
    tmp_path: Path, argv: list[str], program: str
) -> None:
    """Before: "refusing to start: [Errno 20] Not a directory: '...'", exit 1 (a bad setting is exit code 2)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    data = blocker / "data"
    line = _one_line(_run(tmp_path, argv, AGENTRUN_DATA_DIR=str(data)), 2)
    assert f"AGENTRUN_DATA_DIR / --data-dir {str(data)!r}: cannot create the directory: Not a directory" in line, line
