"""Text every store and wire takes. A JSON string may carry a lone UTF-16 surrogate (the escape "\\udc80" is valid
JSON), and Python's decoders keep it; UTF-8 cannot encode it, so protobuf, PostgreSQL and orjson refuse such a string
(a model's function call argument carrying one failed its run INTERNAL). Each lone surrogate becomes U+FFFD; a pair
of surrogates becomes the character it encodes."""

from __future__ import annotations

from typing import Any


def well_formed(text: str) -> str:
    if text.isascii():  # O(1)
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def well_formed_value(value: Any) -> Any:
    """A JSON-like value (dicts, lists, strings, numbers...) with every string, keys too, well formed."""
    if isinstance(value, str):
        return well_formed(value)
    if isinstance(value, dict):
        return {
            well_formed(key) if isinstance(key, str) else key: well_formed_value(item) for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [well_formed_value(item) for item in value]
    return value
