"""A process that serves components (or runs an administrative task such as `migrate`), and its exit codes.

Every reason a service cannot start is reported the same way, whichever command started it: one log line (no
traceback) and the exit code docs/configuration.md documents:

- 0: stopped by SIGINT / SIGTERM after serving (or the task succeeded); 130: interrupted while starting
- 1: anything else that stopped it (e.g. the address is in use)
- 2: a setting is wrong (a bad variable or flag, authentication or TLS misconfigured, an unsupported database URL)
- 3: the database schema is not at the migration head (the line names the `migrate` command to run)
- 4: the database cannot be used: unreachable, missing (the line names the `createdb` command and
  `--create-database`), wrong password or user
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from agentrun_cli.services.components import Component

log = logging.getLogger("agentrun")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIGURATION = 2
EXIT_SCHEMA_OUTDATED = 3
EXIT_DATABASE_UNUSABLE = 4
EXIT_INTERRUPTED = 130


def failure(error: BaseException) -> tuple[int, str] | None:
    """The exit code and one-line reason of an error that keeps a service from starting or a task from running;
    None for an error nobody planned for (a bug: let its traceback show)."""
    from agentrun_core.settings import SettingsError
    from execution_service.errors import ExecutionDatabaseUnusable
    from execution_service.tools.mcp_config import McpConfigError
    from runs_service.errors import SchemaOutdated, StorageUnavailable
    from runs_service.storage.engine import UnsupportedDatabaseURL

    if isinstance(error, SettingsError | UnsupportedDatabaseURL | McpConfigError):
        return EXIT_CONFIGURATION, str(error)
    if isinstance(error, SchemaOutdated):
        return EXIT_SCHEMA_OUTDATED, error.message
    if isinstance(error, StorageUnavailable | ExecutionDatabaseUnusable):
        return EXIT_DATABASE_UNUSABLE, error.message
    if isinstance(error, OSError):
        return EXIT_FAILURE, str(error)
    return None


def serve(
    components: Sequence[Component], *, announce: Callable[[str], None] | None = None, ready: str | None = None
) -> int:
    """Starts `components` in order in this process, serves until SIGINT or SIGTERM, stops them in reverse order
    (so ExecutionService drains its runs before RunsService goes away); the exit code. `announce` gets each
    component's lines once it serves, then `ready` once all do."""
    from agentrun_core import event_loop
    from agentrun_core.logging_setup import configure_logging

    configure_logging(components[0].log_level, components[0].log_format)
    try:
        event_loop.run(_serve(components, announce or (lambda _line: None), ready))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        known = failure(exc)
        if known is None:
            raise
        code, reason = known
        log.error("refusing to start: %s", reason)
        return code
    return EXIT_OK


async def _serve(components: Sequence[Component], announce: Callable[[str], None], ready: str | None) -> None:
    from agentrun_core.serving import wait_for_stop_signal

    started = []
    try:
        for component in components:
            running = await component.start()
            started.append(running)
            for line in running.lines:
                announce(line)
        if ready:
            announce(ready)
        await wait_for_stop_signal()
        log.info("shutting down", extra={"services": [component.name for component in components]})
    finally:
        for running in reversed(started):
            await running.stop()


def administer(task: Callable[[], None], *, what: str, log_level: str, log_format: str) -> int:
    """Runs a synchronous administrative `task` (migrate, downgrade); the exit code, as for `serve`."""
    from agentrun_core.logging_setup import configure_logging

    configure_logging(log_level, log_format)
    try:
        task()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        known = failure(exc)
        if known is None:
            raise
        code, reason = known
        log.error("%s failed: %s", what, reason)
        return code
    return EXIT_OK
