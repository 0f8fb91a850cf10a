"""/login and /logout (only when people sign in with their own tokens: AGENTRUN_WEB_AUTH=tokens without a
single-user AGENTRUN_WEB_TOKEN).

The token is posted in the form's body (never a URL), checked by asking RunsService for one run with it, and kept
only in the server's memory; the browser gets a new session id.
"""

from __future__ import annotations

import logging

import grpc
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from agentrun_core.bearer_token import token_problem
from agentrun_web.clients import Caller, ServiceCallError, Services
from agentrun_web.errors import service_problem
from agentrun_web.rendering import Renderer
from agentrun_web.security import checked_form, sessions_of, settings_of, visitor_of
from agentrun_web.sessions import log_id, new_session_id

log = logging.getLogger(__name__)

MAX_TOKEN_CHARS = 4096


def safe_next(target: str) -> str:
    """A local path to go to after sign-in (never another site: `//host` and `/\\host` are refused)."""
    if not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if any(ord(c) < 0x20 or c in "\\\x7f" for c in target):  # browsers drop tabs and newlines: "/\t/evil"
        return "/"
    return target


async def login_page(request: Request) -> Response:
    renderer: Renderer = request.app.state.renderer
    if not settings_of(request).needs_login or visitor_of(request).session is not None:
        return RedirectResponse(safe_next(request.query_params.get("next", "/")), status_code=303)
    expired = request.query_params.get("expired") == "1"
    return renderer.page(
        request,
        "login.html",
        next=safe_next(request.query_params.get("next", "/")),
        problem="The services no longer accept your token: sign in again." if expired else "",
    )


async def login(request: Request) -> Response:
    renderer: Renderer = request.app.state.renderer
    services: Services = request.app.state.services
    form = await checked_form(request)
    target = safe_next(str(form.get("next") or "/"))
    if not settings_of(request).needs_login:
        return RedirectResponse(target, status_code=303)
    token = str(form.get("token") or "").strip()
    visitor = visitor_of(request)
    problem, status, user = "", 200, ""
    if not token or len(token) > MAX_TOKEN_CHARS or any(c.isspace() for c in token) or token_problem(token):
        problem, status = "Paste the bearer token you were given (one word of printable ASCII, no spaces).", 400
    else:
        try:
            user = await services.runs.user_of(Caller(token))
        except ServiceCallError as exc:
            if exc.code is grpc.StatusCode.UNAUTHENTICATED:
                log.info("sign-in refused: the services do not accept the token", extra={"session": log_id(visitor.id)})
                problem, status = "The services do not accept this token.", 401
            else:
                log.warning("sign-in could not be checked", extra=exc.log_context())
                found = service_problem(exc, request)
                problem, status = f"{found.message} {found.hint}".strip(), found.status
    if problem:
        return renderer.page(request, "login.html", status_code=status, next=target, problem=problem)
    session = sessions_of(request).sign_in(visitor.session.id if visitor.session else None, token, user)
    visitor.replace(session.id, session)
    log.info("signed in", extra={"session": log_id(session.id), "user": user})
    return RedirectResponse(target, status_code=303)


async def logout(request: Request) -> Response:
    await checked_form(request)
    visitor = visitor_of(request)
    if visitor.session is not None:
        sessions_of(request).drop(visitor.session.id)
        log.info("signed out", extra={"session": log_id(visitor.session.id)})
    visitor.replace(new_session_id(), None)
    return RedirectResponse("/login" if settings_of(request).needs_login else "/", status_code=303)
