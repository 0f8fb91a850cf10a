"""Bearer tokens: the store that maps a token to an Identity, and the helper that hashes / generates tokens.

Tokens are never stored: only their sha256 hex digest. A token file (AGENTRUN_TOKENS_FILE) and the inline value
AGENTRUN_TOKENS hold one JSON object per line (each also a valid YAML flow mapping), or one JSON array of them:

    {"user": "alice", "role": "user", "token_sha256": "<64 hex digits>"}

Blank lines and lines starting with `#` are ignored. Roles: user | admin | service (agentrun_core.identity.Role).

    python -m agentrun_core.auth hash TOKEN        # or `hash -` to read the token from stdin
    python -m agentrun_core.auth generate alice --role user
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentrun_core.identity import Identity, Role
from agentrun_core.settings import SettingsError

TOKEN_PREFIX = "agr_"
# Longer than any token we generate by far; a longer presented token is refused before hashing.
MAX_TOKEN_CHARS = 1024
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_USER = re.compile(r"^[A-Za-z0-9@._+-]{1,128}$")


class TokenConfigError(SettingsError):
    """The tokens file or AGENTRUN_TOKENS cannot be used. The message names the source and line, never a token."""


def hash_token(token: str) -> str:
    """The sha256 hex digest stored for a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def generate_token() -> str:
    """A new random token (256 bits of entropy)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class TokenEntry:
    identity: Identity
    token_sha256: str

    def line(self) -> str:
        """The tokens-file line for this entry."""
        return json.dumps(
            {"user": self.identity.user, "role": self.identity.role.value, "token_sha256": self.token_sha256}
        )


class TokenStore:
    """Maps presented bearer tokens to identities by comparing sha256 digests in constant time."""

    def __init__(self, entries: Iterable[TokenEntry]) -> None:
        self._entries = tuple(entries)
        seen: set[str] = set()
        for entry in self._entries:
            if entry.token_sha256 in seen:
                raise TokenConfigError(
                    f"two token entries have the same token_sha256 (one is for user {entry.identity.user!r}): "
                    "every token must be unique"
                )
            seen.add(entry.token_sha256)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(sorted({e.identity.user for e in self._entries}))

    def identify(self, token: str) -> Identity | None:
        """The identity of `token`, or None when it is unknown. Compares against every entry (no early exit)."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        presented = hash_token(token).encode("ascii")
        found: Identity | None = None
        for entry in self._entries:
            if hmac.compare_digest(presented, entry.token_sha256.encode("ascii")):
                found = entry.identity
        return found

    @classmethod
    def load(cls, *, file: Path | None, inline: str = "") -> TokenStore:
        """Entries from the tokens file and/or the inline text (both may be given)."""
        entries: list[TokenEntry] = []
        if file is not None:
            try:
                text = file.read_text(encoding="utf-8")
            except OSError as exc:
                raise TokenConfigError(
                    f"cannot read the tokens file {str(file)!r} (AGENTRUN_TOKENS_FILE): {exc.strerror or exc}"
                ) from None
            entries += parse_token_entries(text, source=f"tokens file {str(file)!r}")
        if inline.strip():
            entries += parse_token_entries(inline, source="AGENTRUN_TOKENS")
        return cls(entries)


def parse_token_entries(text: str, *, source: str) -> list[TokenEntry]:
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise TokenConfigError(f"{source}: not a JSON array of token entries ({exc.msg})") from None
        if not isinstance(items, list):
            raise TokenConfigError(f"{source}: expected a JSON array of token entries")
        return [_entry(item, f"{source}, entry {i}") for i, item in enumerate(items, start=1)]
    entries: list[TokenEntry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}, line {number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            raise TokenConfigError(
                f'{where}: expected a JSON object such as {{"user": "alice", "role": "user", "token_sha256": "..."}}'
            ) from None
        entries.append(_entry(item, where))
    return entries


def _entry(item: Any, where: str) -> TokenEntry:
    if not isinstance(item, dict):
        raise TokenConfigError(f"{where}: expected an object with user, role and token_sha256")
    if "token" in item:
        raise TokenConfigError(
            f"{where}: tokens are stored hashed: replace `token` by `token_sha256` "
            "(python -m agentrun_core.auth hash -)"
        )
    unknown = sorted(set(item) - {"user", "role", "token_sha256", "comment"})
    if unknown:
        raise TokenConfigError(f"{where}: unknown keys {unknown}; expected user, role, token_sha256")
    user, role, digest = item.get("user"), item.get("role", "user"), item.get("token_sha256")
    if not isinstance(user, str) or not _USER.match(user):
        raise TokenConfigError(f"{where}: user must be 1-128 characters of letters, digits and @ . _ + -")
    try:
        parsed_role = Role(role)
    except ValueError:
        raise TokenConfigError(f"{where}: role must be one of {[r.value for r in Role]}, got {role!r}") from None
    if not isinstance(digest, str) or not _HEX64.match(digest.lower()):
        raise TokenConfigError(f"{where}: token_sha256 must be 64 hexadecimal digits (the sha256 of the token)")
    return TokenEntry(Identity(user=user, role=parsed_role), digest.lower())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agentrun_core.auth", description="Hash or generate agentrun bearer tokens."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    hash_cmd = commands.add_parser("hash", help="print the sha256 of a token (`-` reads it from stdin)")
    hash_cmd.add_argument("token", help="the token, or - to read it from stdin (keeps it out of shell history)")
    hash_cmd.add_argument("--user", help="print a whole tokens-file line for this user instead")
    hash_cmd.add_argument("--role", default="user", choices=[r.value for r in Role])
    gen_cmd = commands.add_parser("generate", help="make a random token and print it and its tokens-file line")
    gen_cmd.add_argument("user")
    gen_cmd.add_argument("--role", default="user", choices=[r.value for r in Role])
    gen_cmd.add_argument(
        "--tokens-file",
        type=Path,
        help="append the entry to this tokens file (created, readable by its owner only) and print only the token",
    )
    args = parser.parse_args(argv)

    if args.command == "hash":
        token = sys.stdin.readline().strip() if args.token == "-" else args.token
        if not token:
            print("error: empty token", file=sys.stderr)
            return 2
        digest = hash_token(token)
        if args.user:
            print(TokenEntry(Identity(args.user, Role(args.role)), digest).line())
        else:
            print(digest)
        return 0
    if not _USER.match(args.user):
        print("error: user must be 1-128 characters of letters, digits and @ . _ + -", file=sys.stderr)
        return 2
    token = generate_token()
    entry = TokenEntry(Identity(args.user, Role(args.role)), hash_token(token))
    if args.tokens_file is not None:
        return _append_entry(args.tokens_file, entry, token)
    print(token)
    print(entry.line())
    print(
        f"line 1: the token for {args.user!r} (shown once; give it to them as AGENTRUN_TOKEN). "
        "line 2: append it to AGENTRUN_TOKENS_FILE.",
        file=sys.stderr,
    )
    return 0


def _append_entry(path: Path, entry: TokenEntry, token: str) -> int:
    """Appends `entry` to the tokens file at `path` (created with mode 600) and prints the token alone."""
    path = path.expanduser()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as out:
            if out.tell() == 0:
                out.write("# agentrun tokens (python -m agentrun_core.auth generate USER --tokens-file FILE)\n")
            out.write(entry.line() + "\n")
    except OSError as exc:
        print(f"error: cannot append to {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(token)
    print(
        f"the token for {entry.identity.user!r} ({entry.identity.role.value}) is on stdout, shown once; its entry was "
        f"appended to {path} (services read it at start)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
