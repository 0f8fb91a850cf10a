"""Bearer tokens as given by a person (a variable, a flag, a file, a form): surrounding whitespace (the newline or
CRLF a file ends with) is dropped; any other control or non-ASCII character is refused before gRPC sees it (it would
log its own errors from validate_metadata.cc and fail the call with INTERNAL "Invalid metadata")."""

from __future__ import annotations


def token_problem(token: str) -> str | None:
    """What makes `token` (already stripped) unusable as `authorization: Bearer <token>` metadata, or None. Never
    includes the token itself (it is a secret): only the offending character's code point and position."""
    for position, character in enumerate(token, start=1):
        if not " " <= character <= "~":
            kind = "a non-ASCII character" if not character.isascii() else "a control character"
            return f"holds {kind} (U+{ord(character):04X}) at character {position}; a bearer token is printable ASCII"
    return None


def clean_token(token: str) -> str:
    """`token` without surrounding whitespace (a trailing newline or CR from a file)."""
    return token.strip()
