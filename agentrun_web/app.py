"""The console as an ASGI application: routes, static files, the visitor middleware and the error pages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from agentrun_web import request_log
from agentrun_web.agent_names import AgentNames
from agentrun_web.clients import Services
from agentrun_web.errors import HANDLERS
from agentrun_web.rendering import Renderer
from agentrun_web.routes import auth, live, run, runs, start, stats
from agentrun_web.security import VisitorMiddleware
from agentrun_web.sessions import SessionStore
from agentrun_web.settings import WebSettings
from agentrun_web.started_forms import StartedForms

# Run ids are UUIDs; anything else reaches GetRun, which answers INVALID_ARGUMENT with its own message.
_RUN = "/runs/{run_id:str}"


async def healthz(request: Request) -> Response:
    """Liveness of the console itself (it does not call the services)."""
    return PlainTextResponse("ok")


class StaticAssets(StaticFiles):
    """The package's scripts and styles; browsers may keep them for an hour."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["cache-control"] = "public, max-age=3600"
        return response


def create_app(settings: WebSettings) -> Starlette:
    request_log.install()
    services = Services(settings)
    streams = live.LiveStreams()
    sessions = SessionStore(settings.session_ttl_s, settings.max_sessions)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services.open()
        try:
            yield
        finally:
            streams.end_all()
            await services.close()

    static_dir = resources.files("agentrun_web") / "static"
    app = Starlette(
        routes=[
            Route("/", runs.runs_page, methods=["GET"]),
            Route(_RUN, run.run_details, methods=["GET"]),
            Route(_RUN + "/steps/{sequence:int}", run.step_detail, methods=["GET"]),
            Route(_RUN + "/events", live.run_events, methods=["GET"]),
            Route("/live", live.shared_events, methods=["GET"]),
            Route(_RUN + "/cancel", run.cancel_run, methods=["POST"]),
            Route("/start", start.start_page, methods=["GET"]),
            Route("/start", start.start_run, methods=["POST"]),
            Route("/stats", stats.stats_page, methods=["GET"]),
            Route("/login", auth.login_page, methods=["GET"]),
            Route("/login", auth.login, methods=["POST"]),
            Route("/logout", auth.logout, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Mount("/static", app=StaticAssets(directory=str(static_dir)), name="static"),
        ],
        middleware=[Middleware(VisitorMiddleware, sessions=sessions, settings=settings)],
        exception_handlers=HANDLERS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.services = services
    app.state.sessions = sessions
    app.state.renderer = Renderer()
    app.state.agent_names = AgentNames()
    app.state.live_streams = streams
    app.state.started_forms = StartedForms()
    return app
