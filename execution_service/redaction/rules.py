"""Redaction rules: which keys and values are secrets, and how keys are normalised before they are matched.

Keys are normalised before matching: camelCase, kebab-case, snake_case, dotted and spaced keys become lower-case
words joined by `_` (`refreshToken`, `X-Api-Key` -> `refresh_token`, `x_api_key`). A key is secret when a secret
key regex matches whole words of it, unless its last word says it is about the secret rather than the secret itself
(`token_count`, `auth_method`, `credential_type`: `RedactionRules.non_secret_suffixes`). Keys with spaces (prose
such as "API key: ...") must end with the secret words.

Rules are configurable (ExecutionSettings: AGENTRUN_REDACTION, AGENTRUN_REDACT_KEYS, AGENTRUN_REDACT_PATTERNS,
AGENTRUN_MAX_TOOL_RESULT_BYTES; `rules_with_extras`). The redactor that applies them is
execution_service.redaction.redactor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

REDACTED = "[REDACTED]"
DEEP_MARKER = "[REDACTED: nested too deeply]"

# Regexes, each matched against whole `_`-separated words of the normalised key (lower case, `_` between words).
DEFAULT_SECRET_KEYS = (
    r"pass(word|wd|phrase|code)?",
    r"pwd",
    r"secret",
    r"token",
    r"api[_-]?key",
    r"apikey",
    r"auth(orization)?",
    r"private[_-]?key",
    r"credentials?",
    r"client[_-]?secret",
    r"session[_-]?id",
    r"cookies?",
    r"jwt",
    # Environment variables that hold a password as a single word: PGPASSWORD (psql), SSHPASS (sshpass -e).
    r"pgpassword",
    r"sshpass",
)

# A key whose last word is one of these describes a secret (its count, type, expiry, name...) and is kept, unless
# that last word is itself part of the secret-key match (`session_id`).
DEFAULT_NON_SECRET_SUFFIXES = (
    "count",
    "counts",
    "type",
    "types",
    "kind",
    "method",
    "methods",
    "scheme",
    "mode",
    "format",
    "version",
    "length",
    "len",
    "size",
    "limit",
    "limits",
    "budget",
    "usage",
    "used",
    "remaining",
    "expiry",
    "expires",
    "expiration",
    "expired",
    "ttl",
    "lifetime",
    "age",
    "at",
    "time",
    "timestamp",
    "date",
    "url",
    "uri",
    "endpoint",
    "path",
    "file",
    "name",
    "label",
    "id",
    "ids",
    "provider",
    "policy",
    "required",
    "enabled",
    "status",
    "valid",
    "strength",
)

DEFAULT_SECRET_VALUES = (
    r"(?i:\bbearer\s+[a-z0-9._~+/=-]{8,})",
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)",
    r"\bAIza[0-9A-Za-z_-]{35}\b",
    r"\bsk-[A-Za-z0-9_-]{20,}\b",
    r"\bgh[pousr]_[A-Za-z0-9]{30,}\b",
    r"\bxox[abpr]-[A-Za-z0-9-]{10,}\b",
    r"\bAKIA[0-9A-Z]{16}\b",
    r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\b",
)


@dataclass(frozen=True, slots=True)
class PasswordFlag:
    """A command-line flag that takes a password, for the commands it means that in: `commands` is a regex of the
    command word(s); `flag` its name without the dash (several names separated by `|`: `storepass|keypass`);
    `attached` allows `-pSECRET`, `spaced` allows `-p SECRET`."""

    commands: str
    flag: str
    attached: bool = True
    spaced: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.flag.split("|"))


# Password flags of common tools. Only in these commands: `-p` is a port (ssh, docker run), `--parents` (mkdir),
# "preserve" (cp)... elsewhere. `mysql -p NAME` (spaced) prompts for the password: NAME is the database. keytool's
# `-storepass:env VAR` / `:file PATH` name where the password is, not the password, and are kept.
DEFAULT_PASSWORD_FLAGS = (
    PasswordFlag(r"mysql(?:dump|admin|import|check|show|slap|pump|binlog)?|mariadb(?:-[a-z]+)?", "p"),
    PasswordFlag(r"sshpass", "p", spaced=True),
    PasswordFlag(r"redis-cli", "a", spaced=True),
    PasswordFlag(r"(?:docker|podman|nerdctl|helm\s+registry)\s+login", "p", spaced=True),
    PasswordFlag(r"sqlcmd|bcp|osql", "P", spaced=True),
    PasswordFlag(r"az\s+login", "p", spaced=True),
    PasswordFlag(
        r"keytool",
        "storepass|keypass|srcstorepass|deststorepass|srckeypass|destkeypass|new",
        attached=False,
        spaced=True,
    ),
)


_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z]{2})(?=[A-Z][a-z])|(?<=[A-Za-z])(?=[0-9])")
_NON_ALNUM_RE = re.compile(r"[^A-Za-z0-9]+")


def normalise_key(key: str) -> str:
    """`refreshToken`, `X-Api-Key`, `db.password`, `API key` -> `refresh_token`, `x_api_key`, `db_password`,
    `api_key`: lower-case words joined by `_` (camelCase, separators and letter/digit boundaries split)."""
    return "_".join(w for w in _NON_ALNUM_RE.split(_CAMEL_RE.sub("_", key).lower()) if w)


def words_regex(regex: str) -> str:
    """A key regex as matched against normalised keys: outside character classes `-`, `\\-`, `\\.` and spaces
    stand for the `_` between words, so a configured `x-tenant-key` still matches `X-Tenant-Key` and `xTenantKey`."""
    out: list[str] = []
    in_class = escaped = False
    for ch in regex:
        if escaped:
            escaped = False
            if not in_class and ch in "-.":
                out[-1] = "_"
                continue
        elif ch == "\\":
            escaped = True
        elif ch == "[" and not in_class:
            in_class = True
        elif ch == "]" and in_class:
            in_class = False
        out.append("_" if not in_class and ch in "- " else ch)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class RedactionRules:
    enabled: bool = True
    secret_keys: tuple[str, ...] = DEFAULT_SECRET_KEYS
    secret_values: tuple[str, ...] = DEFAULT_SECRET_VALUES
    max_result_bytes: int = 64 * 1024
    non_secret_suffixes: tuple[str, ...] = DEFAULT_NON_SECRET_SUFFIXES
    password_flags: tuple[PasswordFlag, ...] = DEFAULT_PASSWORD_FLAGS


def rules_with_extras(
    *, enabled: bool, max_result_bytes: int, extra_keys: tuple[str, ...] = (), extra_patterns: tuple[str, ...] = ()
) -> RedactionRules:
    """The default rules plus configured secret-key and secret-value regexes."""
    return RedactionRules(
        enabled=enabled,
        secret_keys=DEFAULT_SECRET_KEYS + tuple(extra_keys),
        secret_values=DEFAULT_SECRET_VALUES + tuple(extra_patterns),
        max_result_bytes=max_result_bytes,
    )
