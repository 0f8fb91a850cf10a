"""A TCP proxy in front of the console that can drop every connection at once (a network that breaks), and
remembers the head of each request that went through it."""

from __future__ import annotations

import asyncio
import contextlib

from tests.web.support import BackgroundLoop

_CHUNK = 65536


class DroppingProxy:
    def __init__(self, loop: BackgroundLoop, target_port: int) -> None:
        self._loop = loop
        self._target_port = target_port
        self._writers: set[asyncio.StreamWriter] = set()
        self.requests: list[str] = []
        self._server: asyncio.Server = loop.run(self._start())
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    async def _start(self) -> asyncio.Server:
        return await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        self._writers |= {client_writer, upstream_writer}

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, record: bool) -> None:
            try:
                while data := await reader.read(_CHUNK):
                    if record and (data.startswith((b"GET ", b"POST ")) or not self.requests):
                        self.requests.append(data.split(b"\r\n\r\n", 1)[0].decode("latin-1"))
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    writer.close()

        try:
            await asyncio.gather(
                pipe(client_reader, upstream_writer, record=True), pipe(upstream_reader, client_writer, record=False)
            )
        finally:
            self._writers -= {client_writer, upstream_writer}

    def drop_all(self) -> None:
        """Closes every connection through the proxy, both ways (the browser sees the stream break)."""

        async def drop() -> None:
            for writer in list(self._writers):
                writer.transport.abort()

        self._loop.run(drop())

    def close(self) -> None:
        async def close() -> None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()

        self._loop.run(close())
