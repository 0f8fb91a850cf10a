"""What a person sees when something goes wrong: a page (or, for a script's fetch, a fragment) saying what happened
and what to do, with the right HTTP status; never a stack trace. Every such answer is logged with its context."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import quote

import grpc
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from agentrun_web.clients import ServiceCallError
from agentrun_web.rendering import Renderer
from agentrun_web.security import (
    CsrfRejected,
    SignInRequired,
    is_cross_site,
    sessions_of,
    settings_of,
    visitor_of,
    wants_fragment,
)
from agentrun_web.sessions import log_id, new_session_id

log = logging.getLogger(__name__)

_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
_TITLES = {
    404: "Not found",
    400: "Bad request",
    409: "Not possible now",
    403: "Not allowed",
    401: "Not signed in",
    429: "Too many requests",
    503: "Service unavailable",
    504: "No answer in time",
}


@dataclass(frozen=True, slots=True)
class Problem:
    status: int
    title: str
    message: str
    hint: str = ""


def service_problem(error: ServiceCallError, request: Request) -> Problem:
    """The page for a failed call: the service's own message, and what to do about it."""
    endpoint = error.endpoint
    status = _HTTP_STATUS.get(error.code, 502)
    title = _TITLES.get(status, "The service failed")
    if error.unreachable:
        return Problem(
            503,
            f"{endpoint.service} is unavailable",
            f"The console cannot reach {endpoint.service} at {endpoint.target} ({error.details or 'no details'}).",
            f"Start the services (agentrun serve all), or point {endpoint.env_var} at them; this page works again "
            "as soon as they answer.",
        )
    if error.code is grpc.StatusCode.DEADLINE_EXCEEDED:
        timeout = settings_of(request).call_timeout_s
        return Problem(
            504,
            title,
            f"{endpoint.service} at {endpoint.target} did not answer {error.method} within {timeout:g} s "
            f"({error.details or 'deadline exceeded'}).",
            "Try again; if it keeps happening, the service is overloaded (AGENTRUN_WEB_CALL_TIMEOUT_S sets the wait).",
        )
    if error.code is grpc.StatusCode.UNAUTHENTICATED:
        settings = settings_of(request)
        hint = (
            "The console's own token (AGENTRUN_WEB_TOKEN) was refused: check it."
            if settings.token is not None
            else "The services require a token: run the console with AGENTRUN_WEB_AUTH=tokens to sign in."
        )
        return Problem(401, title, f"{endpoint.service}: {error.details}", hint)
    message = f"{endpoint.service} answered {error.code.name}: {error.details or 'no details'}"
    return Problem(status, title, message)


def _render(request: Request, problem: Problem) -> Response:
    renderer: Renderer = request.app.state.renderer
    if wants_fragment(request):
        html = renderer.fragment("_problem.html", problem=problem)
        return HTMLResponse(html, status_code=problem.status)
    return renderer.page(request, "problem.html", status_code=problem.status, problem=problem)


def login_redirect(request: Request, *, expired: bool = False) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    suffix = "&expired=1" if expired else ""
    return RedirectResponse(f"/login?next={quote(target, safe='')}{suffix}", status_code=303)


def bounce(request: Request) -> Response:
    """A page that loads the same URL again from the console's own origin, so the browser sends its SameSite=Strict
    session cookie (it did not on this navigation from another site)."""
    renderer: Renderer = request.app.state.renderer
    return HTMLResponse(renderer.fragment("bounce.html"), status_code=200)


async def on_service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceCallError)
    visitor = visitor_of(request)
    context = {**exc.log_context(), "path": request.url.path, "session": log_id(visitor.id)}
    if exc.code is grpc.StatusCode.UNAUTHENTICATED and visitor.session is not None:
        # The token was revoked (or the services restarted with other tokens): sign this session out.
        log.warning("the services refused a signed-in token: signing the session out", extra=context)
        sessions_of(request).drop(visitor.session.id)
        visitor.replace(new_session_id(), None)
        if wants_fragment(request):
            return HTMLResponse("signed out: the services refused your token", status_code=401)
        return login_redirect(request, expired=True)
    level = logging.WARNING if exc.code is not grpc.StatusCode.NOT_FOUND else logging.INFO
    log.log(level, "service call failed", extra=context)
    return _render(request, service_problem(exc, request))


async def on_sign_in_required(request: Request, exc: Exception) -> Response:
    if wants_fragment(request) or request.headers.get("accept") == "text/event-stream":
        return HTMLResponse("sign in first", status_code=401)
    if is_cross_site(request) and not visitor_of(request).had_cookie:
        return bounce(request)
    return login_redirect(request)


async def on_csrf_rejected(request: Request, exc: Exception) -> Response:
    log.warning(
        "request refused: missing or wrong CSRF token, or sent from another site",
        extra={"path": request.url.path, "method": request.method, "origin": request.headers.get("origin")},
    )
    return _render(
        request,
        Problem(
            403,
            "Form expired",
            "This form was not sent from this console's current page (missing or outdated security token).",
            "Go back, reload the page and send it again.",
        ),
    )


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        problem = Problem(404, "Not found", f"There is no page at {request.url.path}.", "Start from the runs list.")
    elif exc.status_code == 405:
        problem = Problem(405, "Method not allowed", f"{request.method} is not allowed on {request.url.path}.")
    else:
        problem = Problem(exc.status_code, _TITLES.get(exc.status_code, "Error"), str(exc.detail))
    log.info("http error", extra={"path": request.url.path, "status": exc.status_code, "detail": exc.detail})
    return _render(request, problem)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error serving a page", extra={"path": request.url.path, "method": request.method})
    return _render(
        request,
        Problem(
            500,
            "Something went wrong in the console",
            f"The console failed to serve {request.url.path} ({type(exc).__name__}). The details are in its log.",
        ),
    )


HANDLERS = {
    ServiceCallError: on_service_error,
    SignInRequired: on_sign_in_required,
    CsrfRejected: on_csrf_rejected,
    HTTPException: on_http_exception,
    Exception: on_unexpected,
}
