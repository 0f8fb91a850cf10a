"""A PostgreSQL server for tests: found or started, with throwaway databases.

Discovery order (first that works wins):
1. AGENTRUN_TEST_DATABASE_URL (a postgresql:// URL of a role that may CREATE DATABASE); when set, nothing else is
   tried.
2. postgresql://postgres@127.0.0.1:5432/test (the local server of the dev machines and CI).
3. A throwaway cluster from /usr/lib/postgresql/*/bin (initdb + postgres, unix socket in a temp dir, fsync off),
   run as the `postgres` user when we are root; stopped by `PostgresServer.stop()`.
`find_postgres()` returns the server, or None and the reason naming everything tried.

A test that needs a server of its own (to stop and restart it, or with password authentication) starts one with
`start_throwaway_cluster(password=...)`; `halt()` / `resume()` / `restart()` stop its postmaster and start it again
on the same data.
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

logger = logging.getLogger(__name__)

ENV_VAR = "AGENTRUN_TEST_DATABASE_URL"
LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/test"
_CONNECT_TIMEOUT_S = 3
_START_TIMEOUT_S = 30


def _libpq_url(url: str) -> str:
    """A URL psycopg.connect accepts (no +driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _reachable(url: str) -> str | None:
    """None when `url` accepts connections and may create databases, else why not."""
    try:
        with psycopg.connect(_libpq_url(url), connect_timeout=_CONNECT_TIMEOUT_S, autocommit=True) as conn:
            row = conn.execute("SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
            if not row or not row[0]:
                return "the role may not CREATE DATABASE"
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}"
    return None


@dataclass
class PostgresServer:
    """A reachable server; `admin_url` connects as a role that may create databases."""

    admin_url: str
    description: str
    process: subprocess.Popen[bytes] | None = None
    work_dir: Path | None = None
    created: set[str] = field(default_factory=set)
    # How to start the postmaster again (a throwaway cluster only).
    launch_argv: list[str] | None = None

    def url_for(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def create_database(self, prefix: str = "agentrun_test", template: str | None = None) -> str:
        """Creates an empty (or `template`-copied) uniquely named database and returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        with psycopg.connect(_libpq_url(self.admin_url), autocommit=True) as conn:
            conn.execute(statement)
        self.created.add(name)
        return self.url_for(name)

    def drop_database(self, url_or_name: str) -> None:
        name = make_url(url_or_name).database if "://" in url_or_name else url_or_name
        if not name:
            raise ValueError(f"no database name in {url_or_name!r}")
        with psycopg.connect(_libpq_url(self.admin_url), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self.created.discard(name)

    def _signal_postmaster(self, signum: signal.Signals) -> None:
        """Signals the postmaster itself (runuser, our direct child, does not forward signals)."""
        assert self.process is not None
        pid_file = self.work_dir / "data" / "postmaster.pid" if self.work_dir is not None else None
        try:
            pid = int(pid_file.read_text().split()[0]) if pid_file is not None else self.process.pid
        except (OSError, ValueError, IndexError):
            pid = self.process.pid
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            logger.info("postgres (pid %d) already exited", pid)

    def halt(self) -> None:
        """Stops the postmaster of a cluster this object started (fast shutdown), keeping its data."""
        if self.process is None:
            return
        self._signal_postmaster(signal.SIGINT)  # fast shutdown: sessions are disconnected
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            logger.warning("postgres did not stop in 15 s, killing it")
            self.process.kill()
            self.process.wait()
        self.process = None

    def resume(self) -> None:
        """Starts a halted cluster again on the same data and socket; returns once it accepts connections."""
        if self.launch_argv is None:
            raise RuntimeError("only a throwaway cluster started by start_throwaway_cluster can be resumed")
        if self.process is not None:
            return
        self.process = subprocess.Popen(self.launch_argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_ready()

    def restart(self) -> None:
        self.halt()
        self.resume()

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + _START_TIMEOUT_S
        problem: str | None = "not started"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                stderr = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"postgres exited with {self.process.returncode}: {stderr[-500:]}")
            problem = _reachable(self.admin_url)
            if problem is None:
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not accept connections within {_START_TIMEOUT_S} s: {problem}")

    def stop(self) -> None:
        """Drops databases this object created; stops and deletes a cluster it started."""
        if self.process is not None or self.launch_argv is None:
            for name in list(self.created):
                try:
                    self.drop_database(name)
                except Exception:
                    logger.exception("could not drop test database %s", name)
        self.halt()
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir = None


def _postgres_bin_dirs() -> list[Path]:
    return [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]


def _as_postgres_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    runuser = shutil.which("runuser")
    if runuser is None:
        raise RuntimeError("running as root and `runuser` is missing: cannot start postgres as the postgres user")
    return [runuser, "-u", "postgres", "--", *argv]


def start_throwaway_cluster(*, password: str | None = None) -> PostgresServer:
    """initdb + postgres in a temp dir (unix socket only, fsync off). With `password`, the `postgres` user needs it
    (scram-sha-256), else any local connection is trusted. Raises RuntimeError naming what failed."""
    bin_dirs = _postgres_bin_dirs()
    if not bin_dirs:
        raise RuntimeError("no PostgreSQL binaries in /usr/lib/postgresql/*/bin")
    bin_dir = bin_dirs[0]
    work_dir = Path(tempfile.mkdtemp(prefix="agentrun-pg-"))
    data_dir, socket_dir = work_dir / "data", work_dir / "socket"
    socket_dir.mkdir()
    initdb = [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "-E", "UTF8"]
    if password is None:
        initdb += ["-A", "trust"]
    else:
        password_file = work_dir / "password"
        password_file.write_text(password + "\n")
        initdb += ["-A", "scram-sha-256", f"--pwfile={password_file}"]
    if os.geteuid() == 0:
        try:
            entry = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(work_dir, ignore_errors=True)
            raise RuntimeError("running as root and there is no `postgres` user to run initdb as") from None
        for path in (work_dir, socket_dir, *([work_dir / "password"] if password is not None else [])):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    init = subprocess.run(_as_postgres_user(initdb), capture_output=True, check=False)
    if init.returncode != 0:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise RuntimeError(f"initdb failed ({init.returncode}): {init.stderr.decode(errors='replace')[-500:]}")
    argv = _as_postgres_user(
        [
            str(bin_dir / "postgres"),
            "-D",
            str(data_dir),
            "-k",
            str(socket_dir),
            "-c",
            "listen_addresses=",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]
    )
    credentials = f"postgres:{password}" if password is not None else "postgres"
    url = f"postgresql://{credentials}@/postgres?host={socket_dir}"
    server = PostgresServer(
        admin_url=url, description=f"throwaway cluster ({bin_dir})", work_dir=work_dir, launch_argv=argv
    )
    try:
        server.resume()
    except Exception:
        server.stop()
        raise
    logger.info("started a throwaway PostgreSQL cluster in %s", work_dir)
    return server


def find_postgres() -> tuple[PostgresServer | None, str]:
    """(server, description) or (None, why no server could be found or started)."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        problem = _reachable(configured)
        if problem is None:
            return PostgresServer(admin_url=configured, description=f"{ENV_VAR}"), f"{ENV_VAR}"
        return None, f"{ENV_VAR}={make_url(configured).render_as_string(hide_password=True)} is unusable: {problem}"
    tried: list[str] = []
    problem = _reachable(LOCAL_URL)
    if problem is None:
        return PostgresServer(admin_url=LOCAL_URL, description=LOCAL_URL), LOCAL_URL
    tried.append(f"{LOCAL_URL}: {problem}")
    try:
        server = start_throwaway_cluster()
        return server, server.description
    except Exception as exc:
        tried.append(f"throwaway cluster: {exc}")
    return None, "no PostgreSQL server for tests; tried " + "; ".join(tried) + f" (set {ENV_VAR} to use another one)"
