"""The redactor: scrubs secrets from tool arguments and results before they are streamed or stored; caps results.

The model still receives the unredacted result: redaction protects the record, not the conversation. Because the
model saw the secret, its own text (model-call text and the final response) is scrubbed too (`scrub_text`), so a
model that repeats a secret does not put it in the stream or the store. A model that repeats a secret in prose
("the token is abc123...") is caught by `SecretMemory`: each run remembers the values its redaction removed and
replaces them literally wherever they appear later in the run.

Rules are configurable (ExecutionSettings: AGENTRUN_REDACTION, AGENTRUN_REDACT_KEYS, AGENTRUN_REDACT_PATTERNS,
AGENTRUN_MAX_TOOL_RESULT_BYTES; `rules_with_extras`); the defaults cover keys such as password, token, api_key,
secret, authorization (as JSON keys, as the `name` of a `{"name": ..., "value": ...}` header entry, and as
`key=value` / `"key": "value"` pairs in text), values that look like bearer tokens, Basic credentials,
passwords in URLs, private keys or well-known API keys, and passwords on command lines (`mysql -pSECRET`,
`--password SECRET`, `sshpass -p SECRET`...: execution_service.redaction.command_line).

Which keys and values are secrets is decided by the rules (execution_service.redaction.rules).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from execution_service.redaction.command_line import CommandLineScrubber
from execution_service.redaction.rules import (
    DEEP_MARKER,
    REDACTED,
    RedactionRules,
    normalise_key,
    words_regex,
)
from execution_service.redaction.secret_memory import SecretMemory

# Always on (with redaction), each only tried when a substring check says it may match: the password of
# `scheme://user:password@host` (scheme, user and host stay), and `Basic <base64>` when the base64 decodes to
# `user:password`.
_URL_CREDENTIALS_RE = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#:\"'<>]*:)(?P<password>[^\s/?#\"'<>]+)(?=@[^\s/?#@\"'<>]+)"
)
_BASIC_RE = re.compile(r"(?i:\bbasic)[ \t]+(?P<credentials>[A-Za-z0-9+/]{6,}={0,2})(?![A-Za-z0-9+/=])")

# `Authorization: Basic xyz`: in a key/value pair the scheme and the credentials are one value.
_AUTH_SCHEMES = (
    r"basic|bearer|digest|token|negotiate|ntlm|hoba|mutual|vapid|apikey|api-key|key|ssws|otp|"
    r"sharedaccesssignature|aws4-hmac-sha256|gitlab-token"
)

# `key: value`, `key=value`, `"key": "value"`, `\"key\": \"value\"` (JSON inside a JSON string), `X-Api-Key: v`,
# `API key: v` (up to three words). Only the key and separator are consumed; the value is captured in a lookahead,
# so a pair whose key is not secret never hides a secret pair in its value.
_WORD = r"[A-Za-z_][\w.-]{0,63}"
_PAIR_RE = re.compile(
    r"(?<!\w)(?P<key>" + _WORD + r"(?:[ ]" + _WORD + r"){0,2})"
    r"(?:\\?[\"'])?[ \t]*(?::(?!//)|=(?!=))\s*"
    r"(?=(?P<value>\[REDACTED\]"
    r"|\\\"(?:[^\"\\\n]|\\[^\"\n])*\\\""
    r"|\"(?:[^\"\\\n]|\\.)*\""
    r"|'[^'\n]*'"
    r"|(?:(?i:" + _AUTH_SCHEMES + r")[ \t]+)?[^\s\"',;&}\]\\]+))"
)

_HEADER_NAME_RE = re.compile(r"[\w.-]{1,64}")
_LABEL_FIELDS = ("name", "key", "header", "Name", "Key", "Header")
_VALUE_FIELDS = ("value", "Value")

# JSON text inside a string is decoded and scrubbed structurally, at most this many encodings deep.
MAX_JSON_IN_STRING_DEPTH = 3
# Deeper JSON structures are replaced by DEEP_MARKER (orjson cannot serialise more than 254 levels, Python
# recursion stops at 1000).
MAX_NESTING = 100
_KEY_CACHE_SIZE = 4096
# Characters scrubbed past what is kept of a long text (a tool result cut to a cap), so that a secret the cut splits
# is still recognised and redacted whole.
SCRUB_MARGIN_CHARS = 4096


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
    _non_secret_suffixes: frozenset[str] = field(init=False)
    _key_cache: dict[str, bool] = field(init=False)
    _command_lines: CommandLineScrubber = field(init=False)

    def __post_init__(self) -> None:
        keys = "|".join(f"(?:{words_regex(k)})" for k in self.rules.secret_keys)
        self._key_re = re.compile(r"(?i)(?:^|_)(?:" + keys + r")(?=_|$)")
        self._value_re = re.compile("|".join(f"(?:{p})" for p in self.rules.secret_values))
        self._non_secret_suffixes = frozenset(s.lower() for s in self.rules.non_secret_suffixes)
        self._key_cache = {}
        self._command_lines = CommandLineScrubber(self.rules.password_flags, self.is_secret_key)

    def new_memory(self) -> SecretMemory:
        """A memory for one run (StepRecorder): pass it to every scrub of that run."""
        return SecretMemory()

    # --- keys -------------------------------------------------------------------------------------------------

    def is_secret_key(self, key: str) -> bool:
        cached = self._key_cache.get(key)
        if cached is None:
            cached = self._classify_key(key)
            if len(self._key_cache) >= _KEY_CACHE_SIZE:
                self._key_cache.clear()
            self._key_cache[key] = cached
        return cached

    def _classify_key(self, key: str) -> bool:
        words = normalise_key(key)
        end = -1
        for match in self._key_re.finditer(words):
            end = match.end()
        if end < 0:
            return False
        if end == len(words):
            return True
        if any(c.isspace() for c in key.strip()):
            return False  # prose ("the secret to success: ..."): the secret words must come last
        return words.rsplit("_", 1)[-1] not in self._non_secret_suffixes

    # --- structures -------------------------------------------------------------------------------------------

    def scrub_value(self, value: Any, memory: SecretMemory | None = None) -> Any:
        """Scrubs a JSON-like value: secret keys get REDACTED values, strings are scanned for secret patterns (and
        decoded and scrubbed structurally when they hold JSON). Returns `value` itself when nothing changed."""
        if not self.rules.enabled:
            return value
        before = len(memory) if memory is not None else 0
        out = self._scrub(value, memory, 0, 0)
        if memory is not None and len(memory) != before:
            # Secrets found late in the walk may also sit in strings scrubbed before they were found.
            out = _apply_memory(out, memory, 0)
        return out

    def _scrub(self, value: Any, memory: SecretMemory | None, level: int, json_depth: int) -> Any:
        if isinstance(value, str):
            return self._scrub_str(value, memory, level, json_depth)
        if isinstance(value, dict):
            if level >= MAX_NESTING:
                return DEEP_MARKER
            return self._scrub_dict(value, memory, level, json_depth)
        if isinstance(value, list):
            if level >= MAX_NESTING:
                return DEEP_MARKER
            items = [self._scrub(v, memory, level + 1, json_depth) for v in value]
            argv = self._command_lines.scrub_argv(items, memory)  # ["mysql", "-pSECRET"], ["sshpass", "-p", "X"]
            if argv is not None:
                items = argv
            return value if all(a is b for a, b in zip(items, value, strict=True)) else items
        return value

    def _scrub_dict(self, value: dict[Any, Any], memory: SecretMemory | None, level: int, json_depth: int) -> Any:
        header_value = self._secret_header_field(value)
        out: dict[Any, Any] | None = None
        for k, v in value.items():
            if (k == header_value or self.is_secret_key(str(k))) and _redactable(v):
                if memory is not None:
                    _remember(v, memory, 0)
                new = REDACTED
            else:
                new = self._scrub(v, memory, level + 1, json_depth)
            if new is not v and out is None:
                out = {}
                for done_k, done_v in value.items():
                    if done_k == k:
                        break
                    out[done_k] = done_v
            if out is not None:
                out[k] = new
        return value if out is None else out

    def _secret_header_field(self, value: dict[Any, Any]) -> str | None:
        """`{"name": "Authorization", "value": "Bearer ..."}` (also key/header, Value): the value field to redact."""
        for value_field in _VALUE_FIELDS:
            if value_field in value:
                for label_field in _LABEL_FIELDS:
                    label = value.get(label_field)
                    if isinstance(label, str) and _HEADER_NAME_RE.fullmatch(label) and self.is_secret_key(label):
                        return value_field
        return None

    def _scrub_str(self, text: str, memory: SecretMemory | None, level: int, json_depth: int) -> str:
        if json_depth < MAX_JSON_IN_STRING_DEPTH and _looks_like_json(text):
            try:
                parsed = orjson.loads(text)
            except orjson.JSONDecodeError:
                pass
            else:
                if isinstance(parsed, (dict, list, str)):
                    scrubbed = self._scrub(parsed, memory, level + 1, json_depth + 1)
                    return text if scrubbed is parsed else _dumps(scrubbed)
        return self._scrub_text(text, memory)

    # --- text -------------------------------------------------------------------------------------------------

    def scrub_text(self, text: str, memory: SecretMemory | None = None) -> str:
        """Free text: secret-looking values, the values of `secret_key=value` / `"secret_key": "value"` pairs, and
        (with a memory) every secret value redacted earlier in the run."""
        if not self.rules.enabled or not text:
            return text
        return self._scrub_text(text, memory)

    def _scrub_text(self, text: str, memory: SecretMemory | None) -> str:
        out = self._value_re.sub(REDACTED if memory is None else _value_replacer(memory), text)
        if "://" in out:
            out = _URL_CREDENTIALS_RE.sub(_url_replacer(memory), out)
        if "asic" in out or "ASIC" in out:
            out = _BASIC_RE.sub(_basic_replacer(memory), out)
        out = self._scrub_pairs(out, memory)
        out = self._command_lines.scrub(out, memory)
        return memory.scrub(out) if memory is not None else out

    def _scrub_pairs(self, text: str, memory: SecretMemory | None) -> str:
        pieces: list[str] | None = None
        pos = 0  # text[:pos] is done
        search = _PAIR_RE.search
        match = search(text)
        while match is not None:
            replacement = None
            if self.is_secret_key(match.group("key")):
                replacement = _redacted_pair_value(match.group("value"), memory)
            if replacement is None:
                match = search(text, match.end())  # the value may hold a pair of its own
                continue
            if pieces is None:
                pieces = []
            start, end = match.span("value")
            pieces.append(text[pos:start])
            pieces.append(replacement)
            pos = end
            match = search(text, end)
        if pieces is None:
            return text
        pieces.append(text[pos:])
        return "".join(pieces)

    def scrub_json_text(self, text: str, memory: SecretMemory | None = None) -> str:
        """Scrubs JSON text structurally when it parses (returned as is when nothing in it was secret), as plain text
        otherwise."""
        if not self.rules.enabled or not text:
            return text
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            return self._scrub_text(text, memory)
        scrubbed = self.scrub_value(parsed, memory)
        return text if scrubbed is parsed else _dumps(scrubbed)

    def scrub_result_text(self, text: str, memory: SecretMemory | None = None) -> str:
        """Tool results are often JSON in text form: scrub them structurally when they parse."""
        stripped = text.lstrip()
        if stripped.startswith(("{", "[")):
            return self.scrub_json_text(text, memory)
        return self.scrub_text(text, memory)

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


def _value_replacer(memory: SecretMemory) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        _remember_text(match.group(0), memory)
        return REDACTED

    return replace


def _url_replacer(memory: SecretMemory | None) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        password = match.group("password")
        if password == REDACTED:
            return match.group(0)
        if memory is not None:
            memory.add(password)
        return match.group("head") + REDACTED

    return replace


def _basic_replacer(memory: SecretMemory | None) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        encoded = match.group("credentials")
        credentials = _basic_credentials(encoded)
        if credentials is None:
            return match.group(0)  # "Basic configuration": a word, not credentials
        if memory is not None:
            memory.add(encoded)
            memory.add(credentials.partition(":")[2])
        return REDACTED

    return replace


def _redactable(value: Any) -> bool:
    """A value under a secret key that is redacted: not empty, and not a boolean (`"auth": false` holds no secret)."""
    return value is not None and value != "" and not isinstance(value, bool)


def _looks_like_json(text: str) -> bool:
    first = text[:1]
    if first in (" ", "\n", "\t", "\r"):
        text = text.strip()
        first = text[:1]
    if first == "{":
        return text.endswith("}") or text.rstrip().endswith("}")
    if first == "[":
        return text.endswith("]") or text.rstrip().endswith("]")
    if first == '"':
        return len(text) > 1 and (text.endswith('"') or text.rstrip().endswith('"'))
    return False


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _basic_credentials(encoded: str) -> str | None:
    """`user:password` when `encoded` is base64 of that (Basic authentication), else None."""
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, ValueError):
        return None
    return decoded if ":" in decoded and decoded.isprintable() else None


def _redacted_pair_value(value: str, memory: SecretMemory | None) -> str | None:
    """The replacement for the value of a secret pair, or None to leave it (empty or already redacted)."""
    if value == REDACTED:
        return None
    if value.startswith('\\"'):
        quote, inner = '\\"', value[2:-2]
    elif value[0] in "\"'" and len(value) > 1:
        quote, inner = value[0], value[1:-1]
    else:
        quote, inner = "", value
    if not inner or inner == REDACTED:
        return None
    if memory is not None:
        _remember_text(inner, memory)
    return f"{quote}{REDACTED}{quote}"


def _remember_text(text: str, memory: SecretMemory) -> None:
    """A redacted text, and its credential part when it is `<scheme> <credential>` (Bearer abc...)."""
    memory.add(text)
    parts = text.split()
    if len(parts) == 2:
        memory.add(parts[1])


def _remember(value: Any, memory: SecretMemory, level: int) -> None:
    """Every string (and integer) in a value that was redacted as a whole, JSON text included."""
    if level >= MAX_NESTING:
        return
    if isinstance(value, str):
        _remember_text(value, memory)
        if _looks_like_json(value):
            try:
                parsed = orjson.loads(value)
            except orjson.JSONDecodeError:
                return
            if not isinstance(parsed, str):
                _remember(parsed, memory, level + 1)
    elif isinstance(value, int) and not isinstance(value, bool):
        memory.add(str(value))
    elif isinstance(value, dict):
        for v in value.values():
            _remember(v, memory, level + 1)
    elif isinstance(value, list):
        for v in value:
            _remember(v, memory, level + 1)


def _apply_memory(value: Any, memory: SecretMemory, level: int) -> Any:
    """`value` with every remembered secret replaced in its strings (the same object when none was found)."""
    if isinstance(value, str):
        return memory.scrub(value)
    if level >= MAX_NESTING:
        return value
    if isinstance(value, dict):
        out = {k: _apply_memory(v, memory, level + 1) for k, v in value.items()}
        return value if all(out[k] is v for k, v in value.items()) else out
    if isinstance(value, list):
        items = [_apply_memory(v, memory, level + 1) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value
