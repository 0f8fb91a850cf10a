"""An execution database that cannot be used at start-up, reported as one line an operator can act on: its URL
(password masked), the cause and the fix (agentrun_core.database_problems), exit code 4 (docs/configuration.md), as
RunsService reports its runs database. A PostgreSQL that does not answer gives up after CONNECT_TIMEOUT_S unless the
URL sets `connect_timeout`."""

from __future__ import annotations

from contextlib import AbstractContextManager

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agentrun_core.database_problems import Diagnosis, diagnosed, masked_url
from execution_service.errors import ExecutionDatabaseUnusable

EXECUTION_DATABASE_SETTING = "AGENTRUN_EXECUTION_DATABASE_URL / --execution-database-url"
CONNECT_TIMEOUT_S = 10


def with_connect_timeout(url: str) -> str:
    """The libpq URL, with `connect_timeout` set to CONNECT_TIMEOUT_S unless it sets one (libpq waits forever)."""
    if "connect_timeout" in conninfo_to_dict(url):
        return url
    return make_conninfo(url, connect_timeout=CONNECT_TIMEOUT_S)


def execution_database_problems(url: str) -> AbstractContextManager[None]:
    """Turns a failure to reach or use the execution database inside the block into ExecutionDatabaseUnusable."""

    def unusable(diagnosis: Diagnosis) -> ExecutionDatabaseUnusable:
        return ExecutionDatabaseUnusable(
            f"cannot use the execution database {masked_url(url)}: {diagnosis.cause}; {diagnosis.fix}"
        )

    return diagnosed(url, unusable, setting=EXECUTION_DATABASE_SETTING, create_flag=None)
