"""Who a request is, and what protects them.

- Every browser gets a random session id in a cookie (HttpOnly, SameSite=Strict, Secure when served over HTTPS);
  a signed-in id maps to the person's bearer token in memory (sessions.SessionStore). The token never goes into a
  cookie, a URL, a page or a log line.
- Every state-changing request (sign-in, sign-out, start, cancel) carries the session's CSRF token (a form field or
  the X-CSRF-Token header) and must not come from another site (Origin / Sec-Fetch-Site).
- A SameSite=Strict cookie is not sent when a person follows a link to the console from another site; such a
  request is answered with a page that reloads itself from the console's own origin (then the cookie is sent),
  instead of a login page that would sign them out.
- Every response carries a strict Content-Security-Policy (scripts and styles from the console only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import FormData, Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentrun_web import request_log
from agentrun_web.clients import Caller
from agentrun_web.sessions import COOKIE_NAME, Session, SessionStore, log_id, new_session_id
from agentrun_web.settings import WebAuth, WebSettings

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
# Sent by the console's own scripts when they fetch a piece of a page (errors then come back as a fragment).
FRAGMENT_HEADER = "x-agentrun-fragment"
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        # Bars and charts are placed with CSS variables in style attributes; no script can come from them.
        "style-src-attr 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    )
)
_SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}


class SignInRequired(Exception):
    """The page needs a signed-in person and this request has none."""


class CsrfRejected(Exception):
    """A state-changing request without the session's CSRF token, or from another site."""


@dataclass(slots=True)
class Visitor:
    """The browser behind a request: its session id (from its cookie, or new) and its signed-in session if any."""

    id: str
    session: Session | None
    # Whether the request came with a (well-formed) session cookie.
    had_cookie: bool
    # Whether the response sets the cookie (a new id, or one replaced at sign-in / sign-out).
    set_cookie: bool

    def replace(self, new_id: str, session: Session | None) -> None:
        self.id = new_id
        self.session = session
        self.set_cookie = True


def _cookie_value(headers: Headers) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed Cookie header: treat as no cookie (logged by nobody: it is the browser's)
        return None
    morsel = jar.get(COOKIE_NAME)
    return morsel.value if morsel is not None and _SESSION_ID.match(morsel.value) else None


def session_cookie(session_id: str, *, secure: bool) -> str:
    parts = [f"{COOKIE_NAME}={session_id}", "Path=/", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


class VisitorMiddleware:
    """Pure ASGI (server-sent event streams pass through untouched): finds or makes the visitor, sets the cookie and
    the security headers on every response."""

    def __init__(self, app: ASGIApp, sessions: SessionStore, settings: WebSettings) -> None:
        self.app = app
        self.sessions = sessions
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        existing = _cookie_value(headers)
        cross_site = headers.get("sec-fetch-site") == "cross-site"
        visitor = Visitor(
            id=existing or new_session_id(),
            session=self.sessions.get(existing),
            had_cookie=existing is not None,
            # Never on a cross-site request: the browser has a cookie we cannot see, and would lose it.
            set_cookie=existing is None and not cross_site,
        )
        scope.setdefault("state", {})["visitor"] = visitor
        log_token = request_log.set_request(log_id(visitor.id), str(scope.get("path", "")))
        secure = scope.get("scheme") == "https" or self.settings.secure_cookies

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                for name, value in _SECURITY_HEADERS.items():
                    if name not in out:
                        out[name] = value
                if "cache-control" not in out:
                    out["cache-control"] = "no-store"
                if visitor.set_cookie:
                    out.append("set-cookie", session_cookie(visitor.id, secure=secure))
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            request_log.reset_request(log_token)


def visitor_of(request: Request) -> Visitor:
    visitor = request.scope.get("state", {}).get("visitor")
    assert isinstance(visitor, Visitor), "VisitorMiddleware is not installed"
    return visitor


def settings_of(request: Request) -> WebSettings:
    settings = request.app.state.settings
    assert isinstance(settings, WebSettings)
    return settings


def sessions_of(request: Request) -> SessionStore:
    sessions = request.app.state.sessions
    assert isinstance(sessions, SessionStore)
    return sessions


def caller_of(request: Request) -> Caller:
    """Whom the services are called as for this request: the configured single-user token, nobody (authentication
    off), or the signed-in person. SignInRequired when the console needs a sign-in and this request has none."""
    settings = settings_of(request)
    if settings.token is not None:
        return Caller(settings.token.get_secret_value())
    if settings.auth is WebAuth.OFF:
        return Caller(None)
    session = visitor_of(request).session
    if session is None:
        raise SignInRequired()
    return Caller(session.token)


def is_cross_site(request: Request) -> bool:
    return request.headers.get("sec-fetch-site") == "cross-site"


def _same_origin(request: Request) -> bool:
    """No Origin header (older browsers, same-origin GETs), or one naming this console's host. The scheme is not
    compared: behind a proxy that terminates TLS the console sees http while the browser says https."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin != "null" and bool(host) and urlsplit(origin).netloc == host


async def checked_form(request: Request) -> FormData:
    """The submitted form, after checking that it carries this session's CSRF token and comes from this site."""
    form = await request.form()
    candidate = request.headers.get(CSRF_HEADER) or str(form.get(CSRF_FIELD) or "")
    visitor = visitor_of(request)
    if (
        not visitor.had_cookie
        or is_cross_site(request)
        or not _same_origin(request)
        or not sessions_of(request).csrf_matches(visitor.id, candidate)
    ):
        raise CsrfRejected()
    return form


def wants_fragment(request: Request) -> bool:
    return request.headers.get(FRAGMENT_HEADER) == "1"


def page_context(request: Request) -> dict[str, Any]:
    """What the layout needs on every page."""
    settings = settings_of(request)
    visitor = visitor_of(request)
    return {
        "request": request,
        "csrf_token": sessions_of(request).csrf_token(visitor.id),
        "signed_in": visitor.session is not None,
        "user_name": visitor.session.user if visitor.session is not None else "",
        "needs_login": settings.needs_login,
        "single_user": settings.token is not None,
        "auth_off": settings.auth is WebAuth.OFF and settings.token is None,
        "path": request.url.path,
    }
