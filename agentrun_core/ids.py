"""Run ids: UUIDv7 strings."""

from __future__ import annotations

import re
import uuid

import uuid6

from agentrun_core.echo import shown

_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def new_run_id() -> str:
    return str(uuid6.uuid7())


def run_id_problem(value: str) -> str | None:
    """Why `value` is not a valid run id (a lower-case UUIDv7 string), or None when it is."""
    if not value:
        return "must not be empty"
    if not _UUID_RE.match(value):
        return f"must be a lower-case UUID string like 0190b6e2-7c3a-7d4e-9f10-2a3b4c5d6e7f, got {shown(value)}"
    parsed = uuid.UUID(value)
    if parsed.version != 7:
        if parsed.version is not None:
            got = f"a UUID of version {parsed.version}"
        elif parsed.int == 0:
            got = "the nil UUID"
        else:
            got = "a UUID of another variant than RFC 9562's, which has no version"
        return f"must be a UUIDv7 (version 7, as agentrun makes them), got {got}"
    return None


SESSION_ID_MAX_LENGTH = 128
SESSION_ID_SYNTAX = (
    f"1-{SESSION_ID_MAX_LENGTH} characters: letters, digits and . _ - :, starting with a letter or digit "
    "(e.g. a UUID, or support:ticket-4711)"
)
_SESSION_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*", re.ASCII)


def session_id_problem(value: str) -> str | None:
    """Why `value` is not a valid session id, or None when it is (SESSION_ID_SYNTAX)."""
    if not value:
        return "must not be empty"
    if len(value) > SESSION_ID_MAX_LENGTH:
        return f"must be at most {SESSION_ID_MAX_LENGTH} characters, got {len(value)}"
    if not _SESSION_ID_RE.fullmatch(value):
        return f"must be {SESSION_ID_SYNTAX}; got {value[:80]!r}"
    return None
