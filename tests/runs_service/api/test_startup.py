"""Start-up and shutdown of the RunsService process: schema checks, migration flag, health, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentrun_core.auth import AuthSettings
from runs_service import server as runs_server
from runs_service.config import RunsSettings
from runs_service.errors import SchemaOutdated
from runs_service.server import migrate_command, start_server
from runs_service.storage import migrate
from runs_service.storage.migrate import MIGRATE_COMMAND


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_refuses_an_unmigrated_database_and_names_the_command(tmp_path: Path) -> None:
    settings = RunsSettings(
        listen_address="127.0.0.1:0", data_dir=tmp_path, migrate_on_start=False, auth=AuthSettings.off()
    )
    with pytest.raises(SchemaOutdated) as caught:
        await start_server(settings)
    assert "agentrun-runs-service migrate" in caught.value.message


def suggested_command(message: str) -> list[str]:
    """The migrate command a SchemaOutdated message suggests, as argv (the console script of this venv)."""
    found = re.search(r"run `(agentrun-runs-service migrate[^`]*)`", message)
    assert found, message
    argv = shlex.split(found.group(1))
    return [str(Path(sys.executable).parent / argv[0]), *argv[1:]]


@pytest.mark.parametrize("how", ["data-dir", "relative-data-dir", "database-url"])
async def test_the_suggested_migrate_command_migrates_this_database_when_run_as_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Started with --data-dir /x, the hint used to say `agentrun-runs-service migrate`, which migrates data/runs.db."""
    service_dir = tmp_path / "service cwd"
    service_dir.mkdir()
    monkeypatch.chdir(service_dir)
    database: dict[str, object] = {"data_dir": tmp_path / "the data"}
    if how == "relative-data-dir":
        database = {"data_dir": Path("rel data")}
    elif how == "database-url":
        database = {"database_url": f"sqlite:///{tmp_path / 'elsewhere.db'}", "data_dir": tmp_path / "unused"}
    settings = RunsSettings(listen_address="127.0.0.1:0", auth=AuthSettings.off(), **database)  # type: ignore[arg-type]
    with pytest.raises(SchemaOutdated) as caught:
        await start_server(settings)
    argv = suggested_command(caught.value.message)
    if how == "database-url":
        assert argv[1:] == ["migrate", "--database-url", settings.database_url]
    else:
        assert argv[1:] == ["migrate", "--data-dir", str(service_dir / settings.data_dir)]

    # Run as printed, from another directory and without the service's environment: it migrates this database.
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "AGENTRUN_DATA_DIR")}
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    running = await start_server(settings)
    await running.stop(0)


def test_the_suggested_command_masks_the_database_password() -> None:
    settings = RunsSettings(database_url="postgresql+psycopg://alice:s3cret@db.example:5432/runs")
    command = migrate_command(settings)
    assert command == f"{MIGRATE_COMMAND} --database-url 'postgresql+psycopg://alice:***@db.example:5432/runs'"
    assert "s3cret" not in command


async def test_refusal_with_a_password_in_the_url_masks_it_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def outdated(url: str, migrate_command: str = MIGRATE_COMMAND) -> None:
        raise SchemaOutdated(f"the database has no schema yet: {migrate.migrate_hint(url, migrate_command)}")

    monkeypatch.setattr(runs_server, "check_schema", outdated)
    settings = RunsSettings(database_url="postgresql+psycopg://alice:s3cret@db.example:5432/runs")
    with pytest.raises(SchemaOutdated) as caught:
        await runs_server._check_schema(settings, settings.database_url)
    message = caught.value.message
    assert "s3cret" not in message
    assert (
        f"run `{MIGRATE_COMMAND} --database-url 'postgresql+psycopg://alice:***@db.example:5432/runs'` "
        "(with the real password for ***) (or `alembic -c "
    ) in message


async def wait_serving(address: str, timeout_s: float = 20.0) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            try:
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{address} did not become SERVING")
            await asyncio.sleep(0.1)


async def test_process_migrates_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "AGENTRUN_DATA_DIR": str(tmp_path), "AGENTRUN_LOG_FORMAT": "json", "AGENTRUN_AUTH": "off"}
    # Without the flag the process refuses to start with exit code 3 and says how to migrate.
    refused = subprocess.run(
        [sys.executable, "-m", "runs_service", "--address", f"127.0.0.1:{port}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 3, refused.stderr
    assert "migrate" in refused.stderr

    proc = subprocess.Popen(
        [sys.executable, "-m", "runs_service", "--address", f"127.0.0.1:{port}", "--migrate"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        await wait_serving(f"127.0.0.1:{port}")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr
        assert "shutting down" in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (tmp_path / "runs.db").exists()


async def test_health_watch_sees_not_serving_at_shutdown_and_does_not_hold_it_up(tmp_path: Path) -> None:
    """Stopping reports NOT_SERVING to open Watch streams and ends them: an open Watch used to keep server.stop
    waiting for its whole grace period (grpc_health's Watch never returns)."""
    settings = RunsSettings(
        listen_address="127.0.0.1:0", data_dir=tmp_path, migrate_on_start=True, auth=AuthSettings.off()
    )
    running = await start_server(settings)
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watches = [health.Watch(health_pb2.HealthCheckRequest(service=name)) for name in ("", runs_server.SERVICE_NAME)]
        for watch in watches:
            assert (await asyncio.wait_for(watch.read(), 5)).status == serving
        grace_s = 10.0
        started = asyncio.get_running_loop().time()
        stopping = asyncio.create_task(running.stop(grace_s))
        for watch in watches:
            assert (await asyncio.wait_for(watch.read(), 5)).status == not_serving
            assert await asyncio.wait_for(watch.read(), 5) is grpc.aio.EOF  # the stream ends
            assert await watch.code() == grpc.StatusCode.OK
        await asyncio.wait_for(stopping, grace_s)
        assert asyncio.get_running_loop().time() - started < grace_s / 2


def _run_service(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    program = str(Path(sys.executable).parent / "agentrun-runs-service")
    env = {**os.environ, "AGENTRUN_AUTH": "off", **(env_extra or {})}
    return subprocess.run([program, *args], env=env, capture_output=True, text=True, timeout=90)


async def test_a_database_migrated_by_a_newer_build_is_refused_in_one_line_with_the_right_advice(
    migrated_db_url: str, tmp_path: Path
) -> None:
    """Before: serving said "run `agentrun-runs-service migrate`", and migrate / serve --migrate crashed with Alembic's
    traceback "Can't locate revision identified by '9999'"."""
    from sqlalchemy import create_engine, text

    from runs_service.errors import SchemaNewer
    from runs_service.storage.engine import sync_url

    engine = create_engine(sync_url(migrated_db_url))
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    head = migrate.head_revision()

    settings = RunsSettings(
        listen_address="127.0.0.1:0",
        database_url=migrated_db_url,
        data_dir=tmp_path,
        migrate_on_start=False,
        auth=AuthSettings.off(),
    )
    with pytest.raises(SchemaNewer) as caught:
        await start_server(settings)
    message = caught.value.message
    assert f"is at schema revision 9999, newer than this build knows (its newest is {head})" in message
    assert "run that newer agentrun" in message
    assert "agentrun-runs-service migrate" not in message  # migrating with this build cannot help

    for argv in (
        ["migrate", "--database-url", migrated_db_url],
        [
            "serve",
            "--migrate",
            "--database-url",
            migrated_db_url,
            "--address",
            "127.0.0.1:0",
            "--data-dir",
            str(tmp_path),
        ],
    ):
        done = _run_service(*argv)
        output = done.stdout + done.stderr
        assert done.returncode == 3, output  # EXIT_SCHEMA_OUTDATED, as for a database that is behind
        assert "Traceback" not in output and "Can't locate revision" not in output, output
        errors = [line for line in output.splitlines() if "newer than this build knows" in line]
        assert len(errors) == 1, output
