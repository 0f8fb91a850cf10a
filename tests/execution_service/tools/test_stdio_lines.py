"""LineTextReceiveStream: the MCP SDK's stdio client reads whole lines through it, in linear time."""

from __future__ import annotations

import inspect
import json

import anyio
import mcp.client.stdio as sdk_stdio
import pytest

import execution_service.tools.connection  # noqa: F401  (installs the reader)
from execution_service.tools.stdio_lines import LINE_POLICY, LinePolicy, LineTextReceiveStream


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


async def _read_capped(chunks: list[bytes], max_bytes: int) -> tuple[list[str], list[str]]:
    """(the items read, the reasons given to on_fault) under a line cap of `max_bytes`."""
    faults: list[str] = []
    token = LINE_POLICY.set(LinePolicy(max_bytes, "test", faults.append))
    try:
        return await _read_all(chunks), faults
    finally:
        LINE_POLICY.reset(token)


def _pieces(line: bytes, size: int = 65536) -> list[bytes]:
    return [line[i : i + size] for i in range(0, len(line), size)]


@pytest.mark.parametrize(
    ("head", "tail", "request_id"),
    [
        (b'{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"', b'"}]}}\n', 7),
        (b'{"result":{"content":[{"type":"text","text":"', b'"}]},"jsonrpc":"2.0","id":"r-9"}\n', "r-9"),
        (b'{"id":3, "jsonrpc": "2.0", "error":{"code":1,"message":"', b'"}}\n', 3),
    ],
)
async def test_an_oversized_answer_becomes_an_error_answer_to_its_request(
    head: bytes, tail: bytes, request_id: int | str
) -> None:
    oversized = head + b"x" * 300_000 + tail
    items, faults = await _read_capped([b'{"a":1}\n', *_pieces(oversized), b'{"b":2}\n'], max_bytes=100_000)
    lines = "".join(items).splitlines()
    assert lines[0] == '{"a":1}' and lines[-1] == '{"b":2}' and len(lines) == 3 and not faults
    answer = json.loads(lines[1])
    assert answer["id"] == request_id and answer["error"]["code"] == -32603
    assert f"was {len(oversized):,} bytes, over the limit of 100,000 bytes" in answer["error"]["message"]


async def test_an_oversized_line_that_answers_nothing_ends_the_stream_with_the_reason() -> None:
    notification = b'{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"' + b"y" * 300_000 + b'"}}\n'
    items, faults = await _read_capped([b'{"a":1}\n', *_pieces(notification), b'{"b":2}\n'], max_bytes=100_000)
    assert "".join(items) == '{"a":1}\n'  # what came before it, then the end
    assert len(faults) == 1 and "over the limit of 100,000 bytes" in faults[0]


async def test_lines_up_to_the_cap_are_read_whole() -> None:
    line = b'{"jsonrpc":"2.0","id":1,"result":"' + b"z" * 99_000 + b'"}\n'
    items, faults = await _read_capped(_pieces(line, 1000), max_bytes=len(line))
    assert "".join(items) == line.decode() and not faults
