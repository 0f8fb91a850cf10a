"""A database that is down, missing or wrong, tried as a new user would, with the real commands as subprocesses:
each case is one log line naming the URL (password masked), the cause and the fix, with the exit code
docs/configuration.md documents (2 settings, 3 schema, 4 database), never a traceback. At run time, PostgreSQL going
away makes RPCs answer UNAVAILABLE with a clear message, and they recover by themselves when it comes back."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from agentrun.runs.v1 import runs_service_pb2 as rs
from agentrun.runs.v1 import runs_service_pb2_grpc as rs_grpc
from sqlalchemy.engine import make_url

from agentrun_core.auth import AuthSettings
from agentrun_core.grpc_status import error_reason
from agentrun_core.proto_convert import run_to_pb
from runs_service.config import RunsSettings
from runs_service.server import RunningRunsServer, start_server
from runs_service.storage.migrate import current_revision, head_revision, upgrade
from tests.runs_service.api.test_startup import wait_serving
from tests.support.postgres import PostgresServer, start_throwaway_cluster
from tests.support.run_factory import make_run
from tests.support.stack import free_port

pytestmark = pytest.mark.postgres

PASSWORD = "hunter2-not-echoed"


def _psycopg(url: str, *, password: str | None = None) -> str:
    """`url` with the driver the docs use (and, when given, a password)."""
    parsed = make_url(url).set(drivername="postgresql+psycopg")
    if password is not None:
        parsed = parsed.set(password=password)
    return parsed.render_as_string(hide_password=False)


def _command(tmp_path: Path, *argv: str, module: str = "runs_service") -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AGENTRUN_AUTH": "off",
        "AGENTRUN_LOG_FORMAT": "text",
        "AGENTRUN_DATA_DIR": str(tmp_path),
    }
    return subprocess.run(
        [sys.executable, "-m", module, *argv], env=env, capture_output=True, text=True, timeout=90, check=False
    )


def _error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one ERROR line of a command that failed; no traceback, no other error."""
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if " ERROR " in line]
    assert len(errors) == 1, output
    return errors[0]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def missing_database(pg_server: PostgresServer) -> Iterator[tuple[str, str]]:
    """(URL with a password, database name) of a database that does not exist; dropped after the test."""
    name = f"agentrun_missing_{uuid.uuid4().hex[:10]}"
    pg_server.created.add(name)  # dropped at the end of the session if a test leaves it behind
    try:
        yield _psycopg(pg_server.url_for(name), password=PASSWORD), name
    finally:
        pg_server.drop_database(name)


def test_migrate_against_a_missing_database_names_createdb_and_the_flag_which_creates_it(
    tmp_path: Path, missing_database: tuple[str, str]
) -> None:
    url, name = missing_database
    done = _command(tmp_path, "migrate", "--database-url", url)
    assert done.returncode == 4, done.stderr
    line = _error_line(done)
    masked = url.replace(PASSWORD, "***")
    assert f'migrate failed: cannot use the database {masked}: the database "{name}" does not exist' in line, line
    assert "createdb " in line and f" {name}`" in line and "or run again with --create-database" in line, line
    assert PASSWORD not in done.stdout + done.stderr

    created = _command(tmp_path, "migrate", "--database-url", url, "--create-database")
    assert created.returncode == 0, created.stderr
    assert "database created" in created.stderr and PASSWORD not in created.stderr
    assert current_revision(url) == head_revision()
    again = _command(tmp_path, "migrate", "--database-url", url, "--create-database")  # exists: nothing to create
    assert again.returncode == 0 and "database created" not in again.stderr, again.stderr


async def test_serve_with_create_database_creates_migrates_and_serves(
    tmp_path: Path, missing_database: tuple[str, str]
) -> None:
    url, _name = missing_database
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "AGENTRUN_AUTH": "off", "AGENTRUN_LOG_FORMAT": "text", "AGENTRUN_DATA_DIR": str(tmp_path)}
    argv = ["--database-url", url, "--create-database", "--migrate", "--address", address]
    proc = subprocess.Popen(
        [sys.executable, "-m", "runs_service", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        await wait_serving(address, timeout_s=60)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr
        assert "database created" in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("command", [[], ["migrate"]], ids=["serve", "migrate"])
def test_an_unreachable_server_is_exit_4_naming_the_address(tmp_path: Path, command: list[str]) -> None:
    port = _closed_port()
    url = f"postgresql+psycopg://agentrun:{PASSWORD}@127.0.0.1:{port}/agentrun"
    started = time.monotonic()
    done = _command(tmp_path, *command, "--database-url", url)
    assert done.returncode == 4, done.stderr
    line = _error_line(done)
    assert f"cannot use the database postgresql+psycopg://agentrun:***@127.0.0.1:{port}/agentrun" in line, line
    assert f"no PostgreSQL server answers at 127.0.0.1:{port}" in line and "Connection refused" in line, line
    assert "start PostgreSQL, or fix the host and port in DATABASE_URL / --database-url" in line, line
    assert PASSWORD not in done.stdout + done.stderr
    assert time.monotonic() - started < 60


def test_agentrun_serve_reports_a_missing_database_the_same_way(
    tmp_path: Path, missing_database: tuple[str, str]
) -> None:
    url, name = missing_database
    runs = ["serve", "runs", "--database-url", url, "--runs-address", f"127.0.0.1:{free_port()}"]
    done = _command(tmp_path, *runs, module="agentrun_cli")
    assert done.returncode == 4, done.stderr
    line = _error_line(done)
    assert f"refusing to start: cannot use the database {url.replace(PASSWORD, '***')}" in line, line
    assert f'the database "{name}" does not exist' in line and "--create-database" in line, line


@pytest.mark.parametrize(
    "url",
    ["mysql://agentrun@127.0.0.1:3306/agentrun", "postgresql+asyncpg://agentrun@127.0.0.1/agentrun", "not a url"],
)
def test_an_unsupported_url_is_exit_2(tmp_path: Path, url: str) -> None:
    for command in ([], ["migrate"]):
        done = _command(tmp_path, *command, "--database-url", url)
        assert done.returncode == 2, done.stderr
        line = _error_line(done)
        assert "use sqlite:///path/to/runs.db or postgresql://user@host:5432/dbname" in line or (
            "not a database URL" in line
        ), line


def test_a_server_that_is_not_postgresql_is_exit_4(tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def answer_like_http() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            with client:
                client.recv(1024)
                client.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=answer_like_http, daemon=True).start()
    try:
        done = _command(tmp_path, "migrate", "--database-url", f"postgresql+psycopg://u@127.0.0.1:{port}/db")
    finally:
        server.close()
    assert done.returncode == 4, done.stderr
    line = _error_line(done)
    assert f"the server at 127.0.0.1:{port} does not answer as PostgreSQL" in line, line


def test_an_outdated_schema_is_exit_3_naming_the_migrate_command(tmp_path: Path, pg_server: PostgresServer) -> None:
    url = _psycopg(pg_server.create_database(), password=PASSWORD)
    try:
        done = _command(tmp_path, "--database-url", url, "--address", f"127.0.0.1:{free_port()}")
        assert done.returncode == 3, done.stderr
        line = _error_line(done)
        masked = url.replace(PASSWORD, "***")
        assert f"the database {masked} has no schema yet" in line, line
        assert "agentrun-runs-service migrate --database-url" in line and PASSWORD not in line, line
    finally:
        pg_server.drop_database(url)


def test_a_schema_at_an_older_revision_is_exit_3_naming_both_revisions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0001")
    done = _command(tmp_path, "--database-url", url, "--address", f"127.0.0.1:{free_port()}")
    assert done.returncode == 3, done.stderr
    line = _error_line(done)
    assert f"the database {url} is at schema revision 0001, this service needs revision {head_revision()}" in line
    assert f"run `agentrun-runs-service migrate --database-url {url}`" in line, line
    migrated = _command(tmp_path, "migrate", "--database-url", url)
    assert migrated.returncode == 0 and current_revision(url) == head_revision(), migrated.stderr


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster of this module's own, with password authentication, that tests may stop and start."""
    try:
        server = start_throwaway_cluster(password=PASSWORD)
    except RuntimeError as exc:
        pytest.skip(f"cannot start a throwaway PostgreSQL cluster: {exc}")
    try:
        yield server
    finally:
        server.stop()


def test_a_user_that_may_not_create_databases_gets_the_command_an_administrator_runs(
    tmp_path: Path, pg_server: PostgresServer
) -> None:
    import shlex
    import shutil

    import psycopg
    from psycopg import sql

    role, name = f"agentrun_nocreate_{uuid.uuid4().hex[:8]}", f"agentrun_missing_{uuid.uuid4().hex[:10]}"
    admin = make_url(pg_server.admin_url)
    libpq = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(PASSWORD)))
    pg_server.created.add(name)
    user_url = make_url(pg_server.url_for(name)).set(username=role).render_as_string(hide_password=False)
    url = _psycopg(user_url, password=PASSWORD)
    try:
        done = _command(tmp_path, "migrate", "--database-url", url, "--create-database")
        assert done.returncode == 4, done.stderr
        line = _error_line(done)
        assert f"{role} may not create databases (permission denied to create database)" in line, line
        printed = line.split("ask an administrator to run `", 1)[1].split("`", 1)[0]
        argv = shlex.split(printed)
        # Run by an administrator, owned by the user: not as the user, who cannot.
        assert argv[0] == "createdb" and argv[-1] == name and ["-O", role] == argv[-3:-1], printed
        assert argv[argv.index("-U") + 1] == "postgres", printed
        assert f"-O makes {role} its owner), or connect as a user with CREATEDB" in line, line
        if admin.username == "postgres" and shutil.which("createdb") and not admin.query.get("host"):
            env = {**os.environ, "PGPASSWORD": admin.password or ""}
            subprocess.run(argv, check=True, env=env, timeout=30)  # the command as printed works
            migrated = _command(tmp_path, "migrate", "--database-url", url)
            assert migrated.returncode == 0, migrated.stderr
    finally:
        pg_server.drop_database(name)
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_a_wrong_password_is_exit_4_without_echoing_it(tmp_path: Path, own_cluster: PostgresServer) -> None:
    url = _psycopg(own_cluster.admin_url, password="not-the-password")
    for command in ([], ["migrate"]):
        done = _command(tmp_path, *command, "--database-url", url)
        assert done.returncode == 4, done.stderr
        line = _error_line(done)
        assert "postgresql+psycopg://postgres:***@/postgres?host=" in line, line
        assert 'refused the password of user "postgres"' in line, line
        assert "put the right user and password in DATABASE_URL / --database-url" in line, line
        assert "not-the-password" not in done.stdout + done.stderr


def _last_day() -> rs.GetRunStatsRequest:
    request = rs.GetRunStatsRequest()
    end = datetime.now(UTC) + timedelta(hours=1)
    request.start_time.FromDatetime(end - timedelta(days=1))
    request.end_time.FromDatetime(end)
    return request


@pytest.fixture
async def runs_on_own_cluster(tmp_path: Path, own_cluster: PostgresServer) -> AsyncIterator[RunningRunsServer]:
    url = _psycopg(own_cluster.create_database(prefix="agentrun_outage"))
    settings = RunsSettings(
        listen_address="127.0.0.1:0",
        data_dir=tmp_path,
        database_url=url,
        migrate_on_start=True,
        auth=AuthSettings.off(),
    )
    running = await start_server(settings)
    try:
        yield running
    finally:
        await running.stop(0)
        own_cluster.resume()
        own_cluster.drop_database(url)


async def test_rpcs_answer_unavailable_while_postgres_is_down_and_recover_when_it_returns(
    runs_on_own_cluster: RunningRunsServer, own_cluster: PostgresServer
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runs_on_own_cluster.port}") as channel:
        stub = rs_grpc.RunsServiceStub(channel)
        before = make_run()
        await stub.RecordRun(rs.RecordRunRequest(run=run_to_pb(before)), timeout=10)
        assert (await stub.GetRun(rs.GetRunRequest(run_id=before.id), timeout=10)).run.id == before.id

        await asyncio.to_thread(own_cluster.halt)
        during = make_run()
        calls = {
            "GetRun": lambda: stub.GetRun(rs.GetRunRequest(run_id=before.id), timeout=20),
            "ListRuns": lambda: stub.ListRuns(rs.ListRunsRequest(), timeout=20),
            "RecordRun": lambda: stub.RecordRun(rs.RecordRunRequest(run=run_to_pb(during)), timeout=20),
            "GetRunStats": lambda: stub.GetRunStats(_last_day(), timeout=20),
        }
        for name, call in calls.items():
            for _ in range(2):  # the first call may find a pooled connection the server closed; the next, none
                started = time.monotonic()
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call()
                error = caught.value
                assert error.code() == grpc.StatusCode.UNAVAILABLE, (name, error.code(), error.details())
                assert error_reason(error) == "STORAGE_UNAVAILABLE", name
                details = error.details() or ""
                assert "the database is unavailable" in details or "the database is unreachable" in details, details
                assert details.endswith("; retry later") and "\n" not in details and len(details) < 400, details
                assert time.monotonic() - started < 15, f"{name} hung while the database was down"

        await asyncio.to_thread(own_cluster.resume)
        deadline = time.monotonic() + 20
        while True:
            try:
                reply = await stub.GetRun(rs.GetRunRequest(run_id=before.id), timeout=10)
                break
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, (exc.code(), exc.details())
                assert time.monotonic() < deadline, "RunsService did not recover after PostgreSQL came back"
                await asyncio.sleep(0.2)
        assert reply.run.id == before.id
        recorded = await stub.RecordRun(rs.RecordRunRequest(run=run_to_pb(during)), timeout=10)
        assert recorded.outcome == rs.RECORD_OUTCOME_CREATED
        listed = await stub.ListRuns(rs.ListRunsRequest(), timeout=10)
        assert {run.id for run in listed.runs} == {before.id, during.id}


async def test_connections_the_database_drops_are_one_warning_line_each_never_a_traceback(
    tmp_path: Path, pg_server: PostgresServer
) -> None:
    import psycopg

    url = _psycopg(pg_server.create_database(prefix="agentrun_dropped"))
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AGENTRUN_AUTH": "off",
        "AGENTRUN_LOG_FORMAT": "text",
        "AGENTRUN_DATA_DIR": str(tmp_path),
        "AGENTRUN_RUNS_ADDRESS": f"127.0.0.1:{port}",
        "DATABASE_URL": url,
        "AGENTRUN_MIGRATE_ON_START": "true",
    }
    proc = subprocess.Popen([sys.executable, "-m", "runs_service"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        await wait_serving(f"127.0.0.1:{port}", timeout_s=60)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = rs_grpc.RunsServiceStub(channel)

            async def load() -> list[grpc.StatusCode]:
                async def one() -> grpc.StatusCode:
                    try:
                        await stub.RecordRun(rs.RecordRunRequest(run=run_to_pb(make_run())))
                        await stub.ListRuns(rs.ListRunsRequest(page_size=20))
                    except grpc.aio.AioRpcError as exc:
                        return exc.code()
                    return grpc.StatusCode.OK

                return list(await asyncio.gather(*(one() for _ in range(20))))

            assert set(await load()) == {grpc.StatusCode.OK}  # the pool now holds several connections
            name = make_url(url).database
            admin = make_url(pg_server.admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            # Calls on dropped connections may fail (UNAVAILABLE, retryable); none is INTERNAL or UNKNOWN.
            assert set(await load()) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
        pg_server.drop_database(url)
    assert "Traceback" not in stderr, stderr
    assert " ERROR " not in stderr, stderr
    dropped = [line for line in stderr.splitlines() if "database pool:" in line]
    assert dropped, stderr
    for line in dropped:
        assert " WARNING " in line and "the connection was discarded" in line, line
        assert "terminating connection due to administrator command" in line or "Error" in line, line
