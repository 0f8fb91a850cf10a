"""A runs database that cannot be used, reported as one line an operator can act on (agentrun_core.database_problems
names the cause and the fix): start-up and `migrate` raise `DatabaseUnusable` (exit code 4, docs/configuration.md);
RPCs report the cause only (UNAVAILABLE), the URL staying in the server's log.
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager

from agentrun_core.database_problems import Diagnosis, diagnosed, masked_url
from runs_service.errors import StorageUnavailable


class DatabaseUnusable(StorageUnavailable):
    """The database at `url` cannot be used; the message is one line: the URL, the cause, the fix."""

    def __init__(self, url: str, diagnosis: Diagnosis) -> None:
        super().__init__(f"cannot use the database {masked_url(url)}: {diagnosis.cause}; {diagnosis.fix}")
        self.url = url
        self.diagnosis = diagnosis


def database_problems(url: str) -> AbstractContextManager[None]:
    """Turns a failure to reach or use the database inside the block into DatabaseUnusable (for start-up and
    administrative commands: the message names the URL)."""
    return diagnosed(url, functools.partial(DatabaseUnusable, url))
