"""Secret redaction for everything a run streams and stores: the rules (what is a secret), the redactor (finding
and replacing secrets in values and text, capping result size) and each run's memory of the secrets it removed."""

from execution_service.redaction.redactor import CappedText, Redactor
from execution_service.redaction.rules import (
    DEEP_MARKER,
    REDACTED,
    RedactionRules,
    normalise_key,
    rules_with_extras,
    words_regex,
)
from execution_service.redaction.secret_memory import SecretMemory

__all__ = [
    "DEEP_MARKER",
    "REDACTED",
    "CappedText",
    "RedactionRules",
    "Redactor",
    "SecretMemory",
    "normalise_key",
    "rules_with_extras",
    "words_regex",
]
