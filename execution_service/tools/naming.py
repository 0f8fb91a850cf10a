"""Names the model sees for tools: unique within an agent and valid Gemini function names.

Gemini function names match `[A-Za-z_][A-Za-z0-9_.-]{0,63}`. A tool keeps its own name unless two servers of the
same agent offer a tool of that (sanitised) name; then both become `{server}_{tool}`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

MAX_FUNCTION_NAME_LENGTH = 64
FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_INVALID_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


def sanitize_function_name(name: str) -> str:
    """Replaces characters Gemini refuses with '_', makes the first character a letter or '_', cuts to 64."""
    cleaned = _INVALID_CHARS.sub("_", name)
    if not cleaned or not (cleaned[0].isascii() and (cleaned[0].isalpha() or cleaned[0] == "_")):
        cleaned = "_" + cleaned
    return cleaned[:MAX_FUNCTION_NAME_LENGTH]


def exposed_names(tools: Sequence[tuple[str, str]]) -> list[str]:
    """One unique, valid name per (server, tool) pair, in the given order.

    Names shared by tools of different servers are prefixed with the server name; collisions that remain (two
    names that sanitise or truncate to the same string) get a numeric suffix `_2`, `_3`, ...
    """
    plain = [sanitize_function_name(tool) for _, tool in tools]
    servers_per_name: dict[str, set[str]] = {}
    for (server, _), name in zip(tools, plain, strict=True):
        servers_per_name.setdefault(name, set()).add(server)
    candidates = [
        sanitize_function_name(f"{server}_{tool}") if len(servers_per_name[name]) > 1 else name
        for (server, tool), name in zip(tools, plain, strict=True)
    ]
    taken = Counter(candidates)
    used: set[str] = set()
    result: list[str] = []
    for candidate in candidates:
        name = candidate
        number = 2
        while name in used or (name != candidate and taken[name] > 0):
            suffix = f"_{number}"
            name = candidate[: MAX_FUNCTION_NAME_LENGTH - len(suffix)] + suffix
            number += 1
        used.add(name)
        result.append(name)
    return result
