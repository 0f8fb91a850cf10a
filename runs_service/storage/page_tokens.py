"""Opaque, signed keyset page tokens.

A token is url-safe base64 (no padding) of `body || mac`: body is a small JSON object holding the position (the
last row's sort value and id) and a digest of the request it belongs to (filter text, normalised order, caller,
collection); mac is HMAC-SHA256 over the body with the service's secret, truncated to 128 bits. A forged or altered
token fails the MAC; a genuine token reused with another filter, order, caller or run fails the request digest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

import orjson

from runs_service.errors import InvalidPageToken

_MAC_BYTES = 16
MIN_SECRET_BYTES = 16
_MAX_TOKEN_CHARS = 2048
# Where a valid token of each field comes from, for the messages ("pass it unchanged, as ...").
_SOURCES = {
    "page_token": "the next_page_token of a previous response gave it",
    "resume_cursor": "an ExportRuns message gave it",
}


def request_digest(parts: Sequence[str | None]) -> str:
    """A short digest of what a page token is bound to (e.g. ("runs", filter, order_by, user))."""
    return hashlib.sha256(orjson.dumps(list(parts))).hexdigest()[:24]


class PageTokenCodec:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"page token secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, bound_to: Sequence[str | None], position: dict[str, Any]) -> str:
        body = orjson.dumps({"r": request_digest(bound_to), "p": position})
        return base64.urlsafe_b64encode(body + self._mac(body)).rstrip(b"=").decode("ascii")

    def decode(
        self, token: str, bound_to: Sequence[str | None], request_description: str, *, field: str = "page_token"
    ) -> dict[str, Any]:
        """The position stored in `token`; InvalidPageToken (naming `field`) when it is malformed, forged or from
        another request.

        `request_description` says what the token must match, e.g. "filter, order_by and caller". The messages
        follow the field's name (`page_token: ... start again without it`), never repeat it.
        """
        source = _SOURCES.get(field, "a previous response gave it")
        if len(token) > _MAX_TOKEN_CHARS:
            raise InvalidPageToken(
                f"is too long to be one this service issued; pass it unchanged, as {source}", field=field
            )
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise InvalidPageToken(f"is malformed; pass it unchanged, as {source}", field=field) from None
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, self._mac(body)):
            raise InvalidPageToken("was not issued by this service or was altered; start again without it", field=field)
        try:
            decoded = orjson.loads(body)
            digest, position = decoded["r"], decoded["p"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise InvalidPageToken("is malformed; start again without it", field=field) from None
        if not hmac.compare_digest(str(digest), request_digest(bound_to)):
            raise InvalidPageToken(
                f"belongs to a request with a different {request_description}; it is only valid with the request it "
                "came from: start again without it",
                field=field,
            )
        if not isinstance(position, dict):
            raise InvalidPageToken("is malformed; start again without it", field=field)
        return position
