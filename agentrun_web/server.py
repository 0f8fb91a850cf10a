"""Serving the console with uvicorn inside the caller's event loop (next to the gRPC servers of `agentrun serve all`,
or alone for `agentrun web`), started and stopped like the services: no signal handling of its own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette

from agentrun_core.settings import SettingsError
from agentrun_core.tasks import cancel_and_wait
from agentrun_web.app import create_app
from agentrun_web.routes.live import LiveStreams
from agentrun_web.settings import ADDRESS_ENV, WebSettings

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0
# How long open pages (event streams, slow requests) may delay a shutdown.
GRACEFUL_SHUTDOWN_S = 2.0
_WILDCARDS = {"0.0.0.0", "::", ""}


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: whoever runs the event loop decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno,
            f"the web console cannot listen on {host}:{port} ({exc.strerror}); "
            f"choose another address with --address / {ADDRESS_ENV}",
        ) from None
    sock.set_inheritable(True)
    return sock


@dataclass
class RunningConsole:
    app: Starlette
    server: uvicorn.Server
    task: asyncio.Task[None]
    port: int
    url: str

    async def stop(self) -> None:
        streams: LiveStreams = self.app.state.live_streams
        streams.end_all()
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), GRACEFUL_SHUTDOWN_S + 5)
        except TimeoutError:
            log.warning("the web console did not stop in time; cancelling it")
            await cancel_and_wait(self.task)


async def start_console(settings: WebSettings) -> RunningConsole:
    """Listens on settings.address (port 0: any free port) and serves until `stop()`. OSError when it cannot bind;
    SettingsError for unusable settings."""
    host, port = settings.host_port()
    # uvicorn's own start-up lines repeat ours ("web console listening"); its warnings and errors still show.
    logging.getLogger("uvicorn.error").setLevel(max(logging.WARNING, logging.getLogger().level))
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_S),
        ssl_certfile=str(settings.https_cert) if settings.https_cert else None,
        ssl_keyfile=str(settings.https_key) if settings.https_key else None,
        proxy_headers=True,
        server_header=False,
    )
    sock = _bind(host, port)
    bound_port = int(sock.getsockname()[1])
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="agentrun-web")
    deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
    while not server.started:
        if task.done():
            sock.close()
            error = task.exception()
            raise SettingsError(f"the web console did not start: {error or 'it stopped at once (see the log)'}")
        if asyncio.get_running_loop().time() > deadline:
            server.should_exit = True
            raise SettingsError("the web console did not start in time (see the log)")
        await asyncio.sleep(0.01)
    scheme = "https" if settings.serves_https else "http"
    shown_host = "127.0.0.1" if host in _WILDCARDS else (f"[{host}]" if ":" in host else host)
    url = f"{scheme}://{shown_host}:{bound_port}/"
    context = {"address": f"{host}:{bound_port}", "url": url, "auth": settings.auth.value}
    log.info("web console listening", extra=context)
    return RunningConsole(app=app, server=server, task=task, port=bound_port, url=url)
