"""LineTextReceiveStream: the MCP SDK's stdio client reads whole lines through it, in linear time."""

from __future__ import annotations

import inspect

import anyio
import mcp.client.stdio as sdk_stdio

import execution_service.tools.connection  # noqa: F401  (installs the reader)
from execution_service.tools.stdio_lines import LineTextReceiveStream


async def _read_all(chunks: list[bytes]) -> list[str]:
    send, receive = anyio.create_memory_object_stream[bytes](len(chunks))
    for chunk in chunks:
        send.send_nowait(chunk)
    send.close()  # the reader gets EndOfStream after the last chunk, as from a process's stdout
    return [item async for item in LineTextReceiveStream(receive)]  # type: ignore[arg-type]


async def test_items_are_whole_lines_whatever_the_chunks() -> None:
    snowman = "☃".encode()
    chunks = [b'{"a":', b"1}\n{", b'"b": "x' + snowman[:1], snowman[1:] + b'"}\n{"c":3}\n{"d"', b":4}\n", b"partial"]
    items = await _read_all(chunks)
    assert items == ['{"a":1}\n', '{"b": "x☃"}\n{"c":3}\n', '{"d":4}\n']
    assert "".join(items).split("\n")[:-1] == ['{"a":1}', '{"b": "x☃"}', '{"c":3}', '{"d":4}']  # the tail is dropped


async def test_a_long_line_in_many_chunks_is_one_item() -> None:
    line = b"x" * (64 * 1024 * 50) + b"\n"
    chunks = [line[i : i + 65536] for i in range(0, len(line), 65536)]
    assert await _read_all(chunks) == [line.decode()]


def test_the_sdk_reads_stdout_through_it() -> None:
    assert sdk_stdio.TextReceiveStream is LineTextReceiveStream
    # If a new SDK no longer builds its text stream from this name, the reader is quadratic again: fail loudly.
    assert "TextReceiveStream(process.stdout" in inspect.getsource(sdk_stdio.stdio_client)
