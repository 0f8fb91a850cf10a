"""Scrubs secrets from tool arguments and results before they are streamed or stored, and caps result size.

The model still receives the unredacted result: redaction protects the record, not the conversation. Because the
model saw the secret, its own text (model-call text and the final response) is scrubbed too (`scrub_text`), so a
model that repeats a secret does not put it in the stream or the store.

Rules are configurable (ExecutionSettings: AGENTRUN_REDACTION, AGENTRUN_REDACT_KEYS, AGENTRUN_REDACT_PATTERNS,
AGENTRUN_MAX_TOOL_RESULT_BYTES; `rules_with_extras`); the defaults cover keys such as password, token, api_key,
secret, authorization (as JSON keys and as `key=value` / `"key": "value"` pairs in text), and values that look like
bearer tokens, private keys or well-known API keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

REDACTED = "[REDACTED]"

DEFAULT_SECRET_KEYS = (
    r"pass(word|wd|phrase)?",
    r"secret",
    r"token",
    r"api[_-]?key",
    r"apikey",
    r"auth(orization)?",
    r"private[_-]?key",
    r"credentials?",
    r"client[_-]?secret",
    r"session[_-]?id",
    r"cookie",
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
class RedactionRules:
    enabled: bool = True
    secret_keys: tuple[str, ...] = DEFAULT_SECRET_KEYS
    secret_values: tuple[str, ...] = DEFAULT_SECRET_VALUES
    max_result_bytes: int = 64 * 1024


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


@dataclass(frozen=True, slots=True)
class CappedText:
    text: str
    original_size_bytes: int
    truncated: bool


@dataclass(slots=True)
class Redactor:
    rules: RedactionRules = field(default_factory=RedactionRules)
    _key_re: re.Pattern[str] = field(init=False)
    _value_re: re.Pattern[str] = field(init=False)
    _pair_re: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        keys = "|".join(f"(?:{k})" for k in self.rules.secret_keys)
        self._key_re = re.compile(r"(?i)^(.*[_-])?(" + keys + r")([_-].*)?$")
        self._value_re = re.compile("|".join(f"(?:{p})" for p in self.rules.secret_values))
        # `password=...`, `"api_key": "..."`, `X-Auth-Token: ...` inside free text: the value goes, the key stays.
        self._pair_re = re.compile(
            r"(?i)(?P<key>[\"']?(?<![\w-])(?:[a-z0-9]+[_-])*(?:" + keys + r")(?:[_-][a-z0-9]+)*(?![\w])[\"']?"
            r"\s*[:=]\s*)"
            r"(?P<value>\[REDACTED\]|\"(?:[^\"\\\n]|\\.)*\"|'[^'\n]*'|[^\s\"',;&}\]]+)"
        )

    def is_secret_key(self, key: str) -> bool:
        return bool(self._key_re.match(key))

    def scrub_value(self, value: Any) -> Any:
        """Scrubs a JSON-like value: secret keys get REDACTED values, strings are scanned for secret patterns."""
        if not self.rules.enabled:
            return value
        if isinstance(value, dict):
            return {
                k: (REDACTED if self.is_secret_key(str(k)) and v not in (None, "") else self.scrub_value(v))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.scrub_value(v) for v in value]
        if isinstance(value, str):
            return self.scrub_text(value)
        return value

    def scrub_text(self, text: str) -> str:
        """Free text: secret-looking values, and the values of `secret_key=value` / `"secret_key": "value"` pairs."""
        if not self.rules.enabled or not text:
            return text
        return self._pair_re.sub(_redact_pair, self._value_re.sub(REDACTED, text))

    def scrub_json_text(self, text: str) -> str:
        """Scrubs JSON text structurally when it parses, as plain text otherwise."""
        if not self.rules.enabled or not text:
            return text
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            return self.scrub_text(text)
        return orjson.dumps(self.scrub_value(parsed)).decode()

    def scrub_result_text(self, text: str) -> str:
        """Tool results are often JSON in text form: scrub them structurally when they parse."""
        stripped = text.lstrip()
        if stripped.startswith(("{", "[")):
            return self.scrub_json_text(text)
        return self.scrub_text(text)

    def cap(self, text: str, *, original_size_bytes: int | None = None) -> CappedText:
        """Truncates text over max_result_bytes (UTF-8) with a marker. `original_size_bytes` is the size of the
        result as the tool returned it (before scrubbing); the size of `text` when not given."""
        encoded = text.encode()
        size = len(encoded)
        original = size if original_size_bytes is None else original_size_bytes
        limit = self.rules.max_result_bytes
        if size <= limit:
            return CappedText(text, original, False)
        head = encoded[:limit].decode(errors="ignore")
        return CappedText(f"{head}\n[truncated: {original} bytes in all, {limit} kept]", original, True)


def _redact_pair(match: re.Match[str]) -> str:
    value = match.group("value")
    if value == REDACTED or value in ('""', "''"):
        return match.group(0)
    quote = value[0] if value[0] in "\"'" and len(value) > 1 else ""
    return f"{match.group('key')}{quote}{REDACTED}{quote}"
