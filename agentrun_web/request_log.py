"""Every log line the console writes while serving a request names that request: its browser session (a digest of
the session id, never the id) and its path, so a person's trouble can be followed through the log.

The visitor middleware sets the context per request; a filter on the `agentrun_web` logger adds it to each record
(`browser_session`, `path`) unless the line already says.
"""

from __future__ import annotations

import contextvars
import logging

_REQUEST: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("agentrun_web_request", default=None)


def set_request(browser_session: str, path: str) -> contextvars.Token[tuple[str, str] | None]:
    return _REQUEST.set((browser_session, path))


def reset_request(token: contextvars.Token[tuple[str, str] | None]) -> None:
    _REQUEST.reset(token)


class RequestLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        current = _REQUEST.get()
        if current is not None:
            browser_session, path = current
            if not hasattr(record, "browser_session"):
                record.browser_session = browser_session
            if not hasattr(record, "path"):
                record.path = path
        return True


def install() -> None:
    """Adds the filter to the console's logger once."""
    logger = logging.getLogger("agentrun_web")
    if not any(isinstance(existing, RequestLogFilter) for existing in logger.filters):
        logger.addFilter(RequestLogFilter())
