"""`python -m runs_service` / `agentrun-runs-service`: serve (default) or migrate the database."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from agentrun_core import event_loop
from agentrun_core.logging_setup import configure_logging
from agentrun_core.settings import SettingsError
from runs_service.config import RunsSettings
from runs_service.errors import SchemaOutdated, StorageUnavailable

log = logging.getLogger("runs_service")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentrun-runs-service", description="agentrun RunsService")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate", "downgrade"])
    parser.add_argument("--address", help="listen address host:port (AGENTRUN_RUNS_ADDRESS)")
    parser.add_argument("--database-url", help="SQLAlchemy URL (DATABASE_URL); default SQLite in the data dir")
    parser.add_argument("--data-dir", type=Path, help="data directory (AGENTRUN_DATA_DIR)")
    parser.add_argument(
        "--migrate", action="store_true", default=None, help="migrate the schema on start (AGENTRUN_MIGRATE_ON_START)"
    )
    parser.add_argument("--revision", default=None, help="target revision for migrate/downgrade")
    parser.add_argument("--log-level", help="AGENTRUN_LOG_LEVEL")
    parser.add_argument("--log-format", choices=["json", "text", "auto"], help="AGENTRUN_LOG_FORMAT")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = RunsSettings.from_env().with_overrides(
            listen_address=args.address,
            database_url=args.database_url,
            data_dir=args.data_dir,
            migrate_on_start=args.migrate,
            log_level=args.log_level,
            log_format=args.log_format,
        )
    except SettingsError as exc:
        print(f"agentrun-runs-service: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    from runs_service.storage.migrate import downgrade, upgrade

    try:
        if args.command == "migrate":
            upgrade(settings.resolved_database_url(), args.revision or "head")
            log.info("database migrated", extra={"revision": args.revision or "head"})
            return 0
        if args.command == "downgrade":
            downgrade(settings.resolved_database_url(), args.revision or "base")
            return 0
        from runs_service.server import run_server

        event_loop.run(run_server(settings))
        return 0
    except SchemaOutdated as exc:
        log.error("refusing to start: %s", exc.message)
        return 3
    except SettingsError as exc:  # authentication or TLS misconfigured (docs/security.md)
        log.error("refusing to start: %s", exc)
        return 2
    except StorageUnavailable as exc:
        log.error("database unavailable: %s", exc.message)
        return 4
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
