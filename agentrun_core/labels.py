"""Run labels: the one rule for label keys, shared by ExecuteAgent, RecordRun and the `labels.<key>` filter.

A key is what a filter can name: ASCII letters, digits and `_ . - /` (so Kubernetes-style `app.kubernetes.io/name`
works), starting with a letter or digit, at most 128 characters. Values are free text.
"""

from __future__ import annotations

import re

from agentrun_core.echo import shown

MAX_LABEL_KEY_CHARS = 128
LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/]*", re.ASCII)
LABEL_KEY_RULE = "letters, digits and _ . - / (starting with a letter or digit)"


def label_key_problem(key: str) -> str | None:
    """Why `key` cannot be a label key, or None when it can."""
    if len(key) > MAX_LABEL_KEY_CHARS:
        return f"label key {shown(key, 40)} is over the cap of {MAX_LABEL_KEY_CHARS} characters"
    if not LABEL_KEY.fullmatch(key):
        return f"invalid label key {shown(key)}: a key is made of {LABEL_KEY_RULE}"
    return None
