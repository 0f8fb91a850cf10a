"""Browser sessions, in memory: a random id in an HttpOnly cookie; a signed-in id maps to the person's bearer token.
Nothing is written anywhere: a restart of the console signs everybody out.

Every visitor gets an id (so the login form has a CSRF token too), but only signed-in sessions are stored: the CSRF
token of an id is an HMAC of it under a key made at start-up, so a visitor who never signs in costs no memory.
Signing in replaces the id with a new one (an id known before login is worth nothing after it). Sessions expire after
`ttl_s` without a request; past `max_sessions` the least recently used one is dropped.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

COOKIE_NAME = "agentrun_session"
_ID_BYTES = 32


def new_session_id() -> str:
    return secrets.token_urlsafe(_ID_BYTES)


def log_id(session_id: str) -> str:
    """A short digest of a session id, for log lines (never the id itself, never a token)."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:12]


@dataclass(slots=True)
class Session:
    id: str = field(repr=False)
    # The bearer token the person signed in with.
    token: str = field(repr=False)
    last_seen: float
    # Who the services take the token for (shown in the header); "" when they did not say.
    user: str = ""


class SessionStore:
    def __init__(self, ttl_s: float, max_sessions: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._max = max_sessions
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def csrf_token(self, session_id: str) -> str:
        return hmac.new(self._key, session_id.encode(), hashlib.sha256).hexdigest()

    def csrf_matches(self, session_id: str, candidate: str) -> bool:
        return bool(candidate) and hmac.compare_digest(self.csrf_token(session_id), candidate)

    def get(self, session_id: str | None) -> Session | None:
        """The signed-in session with this id (its expiry pushed back), or None."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = self._clock()
        if now - session.last_seen > self._ttl_s:
            del self._sessions[session_id]
            return None
        session.last_seen = now
        self._sessions.move_to_end(session_id)
        return session

    def sign_in(self, old_id: str | None, token: str, user: str = "") -> Session:
        """A new signed-in session for `token` (the services' `user`); the old id (if it was signed in) ends."""
        if old_id:
            self.drop(old_id)
        session = Session(id=new_session_id(), token=token, last_seen=self._clock(), user=user)
        self._sessions[session.id] = session
        while len(self._sessions) > self._max:
            self._sessions.popitem(last=False)
        return session

    def drop(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
