"""Run labels: the one rule for label keys, shared by ExecuteAgent, RecordRun and the `labels.<key>` filter.

A key is what a filter can name: ASCII letters, digits and `_ . - /` (so Kubernetes-style `app.kubernetes.io/name`
works), starting with a letter or digit, at most 128 characters. A value is free text of at most 256 characters
(a longer one is refused by ExecuteAgent and RecordRun(s), and a filter comparing a label with one is INVALID_FILTER:
no stored run can have it).
"""

from __future__ import annotations

import re

from agentrun_core.echo import shown

MAX_LABEL_KEY_CHARS = 128
MAX_LABEL_VALUE_CHARS = 256
LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/]*", re.ASCII)
LABEL_KEY_RULE = "letters, digits and _ . - / (starting with a letter or digit)"


def label_key_problem(key: str) -> str | None:
    """Why `key` cannot be a label key, or None when it can."""
    if len(key) > MAX_LABEL_KEY_CHARS:
        return f"label key {shown(key, 40)} is over the cap of {MAX_LABEL_KEY_CHARS} characters"
    if not LABEL_KEY.fullmatch(key):
        return f"invalid label key {shown(key)}: a key is made of {LABEL_KEY_RULE}"
    return None


def label_value_problem(key: str, value: str) -> str | None:
    """Why `value` cannot be the value of label `key`, or None when it can."""
    if len(value) > MAX_LABEL_VALUE_CHARS:
        return (
            f"the value of label {shown(key, 40)} is {len(value)} characters, over the cap of {MAX_LABEL_VALUE_CHARS}"
        )
    return None


def label_problem(key: str, value: str) -> str | None:
    """Why `key` = `value` cannot be a label, or None when it can."""
    return label_key_problem(key) or label_value_problem(key, value)
