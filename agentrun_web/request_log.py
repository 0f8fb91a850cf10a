"""Every log line the console writes while serving a request names that request: its browser session (a digest of
the session id, never the id) and its path, so a person's trouble can be followed through the log.

The visitor middleware sets the context per request; a log record factory adds it to each record of the console's
loggers (`browser_session`, `request_path`).
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

_REQUEST: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("agentrun_web_request", default=None)


def set_request(browser_session: str, path: str) -> contextvars.Token[tuple[str, str] | None]:
    return _REQUEST.set((browser_session, path))


def reset_request(token: contextvars.Token[tuple[str, str] | None]) -> None:
    _REQUEST.reset(token)


def _named(record: logging.LogRecord) -> logging.LogRecord:
    current = _REQUEST.get()
    if current is not None and record.name.startswith("agentrun_web"):
        browser_session, path = current
        # Names no log call passes as `extra` (logging refuses an extra that overwrites a record's attribute).
        record.browser_session = browser_session
        record.request_path = path
    return record


_installed = False


def install() -> None:
    """Names the request on every record of the console's loggers (a record factory: a logger's filter would not see
    the records of its children, agentrun_web.errors and the others). Once per process."""
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return _named(previous(*args, **kwargs))

    logging.setLogRecordFactory(factory)
