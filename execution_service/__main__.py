"""`python -m execution_service` / `agentrun-execution-service`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from agentrun_core import event_loop
from agentrun_core.logging_setup import configure_logging
from agentrun_core.settings import SettingsError
from execution_service.config import ExecutionSettings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentrun-execution-service", description="agentrun ExecutionService")
    parser.add_argument("--address", help="listen address host:port (AGENTRUN_EXECUTION_ADDRESS)")
    parser.add_argument("--runs-service", help="RunsService target host:port (AGENTRUN_RUNS_SERVICE_TARGET)")
    parser.add_argument("--agents-dir", type=Path, help="directory of .prompt files (AGENTRUN_AGENTS_DIR)")
    parser.add_argument("--mcp-config", type=Path, help="mcp.json (AGENTRUN_MCP_CONFIG)")
    parser.add_argument("--data-dir", type=Path, help="data directory for the outbox (AGENTRUN_DATA_DIR)")
    parser.add_argument("--log-level", help="AGENTRUN_LOG_LEVEL")
    parser.add_argument("--log-format", choices=["json", "text", "auto"], help="AGENTRUN_LOG_FORMAT")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = ExecutionSettings.from_env().with_overrides(
            listen_address=args.address,
            runs_service_target=args.runs_service,
            agents_dir=args.agents_dir,
            mcp_config=args.mcp_config,
            data_dir=args.data_dir,
            log_level=args.log_level,
            log_format=args.log_format,
        )
    except SettingsError as exc:
        print(f"agentrun-execution-service: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    from execution_service.server import run_server

    try:
        event_loop.run(run_server(settings))
    except SettingsError as exc:  # authentication or TLS misconfigured (docs/security.md)
        logging.getLogger("execution_service").error("refusing to start: %s", exc)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
