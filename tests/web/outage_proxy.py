"""A TCP proxy in front of a service that can play the service being down: while down it closes every connection
it had and every new one as soon as it is accepted (as a stopped server's port refuses them), and notes when each
connection attempt came; back up, it forwards again, on the same port."""

from __future__ import annotations

import asyncio
import contextlib
import time

from tests.web.support import BackgroundLoop

_CHUNK = 65536


class OutageProxy:
    def __init__(self, loop: BackgroundLoop, target_port: int) -> None:
        self._loop = loop
        self._target_port = target_port
        self._writers: set[asyncio.StreamWriter] = set()
        self.down = False
        # time.monotonic() of each connection attempt refused while down.
        self.refused_at: list[float] = []
        self._server: asyncio.Server = loop.run(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.target = f"127.0.0.1:{self.port}"

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.down:
            self.refused_at.append(time.monotonic())
            client_writer.transport.abort()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        self._writers |= {client_writer, upstream_writer}

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(_CHUNK):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass  # the other side went away: the finally below closes this side too
            finally:
                with contextlib.suppress(ConnectionError, OSError):
                    writer.close()

        try:
            await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))
        finally:
            self._writers -= {client_writer, upstream_writer}

    def stop_service(self) -> None:
        """The service goes down: open connections break, new ones are closed at once."""

        async def stop() -> None:
            self.down = True
            for writer in list(self._writers):
                writer.transport.abort()

        self._loop.run(stop())

    def restart_service(self) -> None:
        async def restart() -> None:
            self.down = False

        self._loop.run(restart())

    def close(self) -> None:
        async def close() -> None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()

        self._loop.run(close())
