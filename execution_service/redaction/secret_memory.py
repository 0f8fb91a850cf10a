"""The secret values one run's redaction removed, scrubbed wherever the run repeats them later."""

from __future__ import annotations

import re

from execution_service.redaction.rules import REDACTED


class SecretMemory:
    """The secret values one run's redaction removed (at least MIN_LENGTH characters, so common short words
    survive), replaced literally wherever they appear later in the same run: a model repeating a secret in prose
    ("the refreshToken is ...") is scrubbed even though no rule matches the prose."""

    MIN_LENGTH = 6
    MAX_VALUES = 1024

    __slots__ = ("_pattern", "_values")

    def __init__(self) -> None:
        self._values: dict[str, None] = {}
        self._pattern: re.Pattern[str] | None = None

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, value: object) -> bool:
        return value in self._values

    def add(self, value: str) -> None:
        value = value.strip()
        if (
            len(value) < self.MIN_LENGTH
            or value in self._values
            or REDACTED in value
            or len(self._values) >= self.MAX_VALUES
        ):
            return
        self._values[value] = None
        self._pattern = None

    def scrub(self, text: str) -> str:
        if not self._values or len(text) < self.MIN_LENGTH:
            return text
        if self._pattern is None:
            ordered = sorted(self._values, key=len, reverse=True)  # the longest first: no half-replaced secret
            self._pattern = re.compile("|".join(map(re.escape, ordered)))
        return self._pattern.sub(REDACTED, text)
