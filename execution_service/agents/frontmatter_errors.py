"""Readable messages for front matter that dotpromptz refuses to parse.

dotpromptz reports only a fixed reason and a position (it never echoes the source). For an agent file the author
is the reader, so we add the offending line and, for broken YAML, PyYAML's own description of the problem.
"""

from __future__ import annotations

import re

import yaml
from dotpromptz import FrontmatterError

# What each recognized front matter key must hold, for "invalid recognized field type".
EXPECTED_TYPES = {
    "name": "a string",
    "description": "a string",
    "model": "a string such as googleai/gemini-2.5-flash",
    "tools": 'a list of "server/tool" or "server/*" strings',
    "config": "a mapping of generation settings",
    "input": "a mapping with keys schema and default",
    "output": "a mapping",
    "variant": "a string",
    "version": "a string",
}
_KEY_AT_LINE_START = re.compile(r"\s*([A-Za-z_][\w.]*)\s*:")


def describe_frontmatter_error(error: FrontmatterError, source: str) -> str:
    lines = source.splitlines()
    line_text = lines[error.line - 1].strip() if 0 < error.line <= len(lines) else ""
    where = f"line {error.line}, column {error.column}"
    if error.reason == "missing closing delimiter":
        return f'the front matter opened by "---" at line {error.line} has no closing "---" line'
    if error.reason == "invalid YAML":
        detail = _yaml_problem(source)
        message = f"front matter is not valid YAML at {where}" + (f" ({detail})" if detail else "")
    elif error.reason == "invalid recognized field type":
        key_match = _KEY_AT_LINE_START.match(line_text)
        key = key_match.group(1) if key_match else None
        expected = EXPECTED_TYPES.get(key or "")
        if key and expected:
            message = f"front matter key {key!r} at {where} must be {expected}"
        else:
            message = f"front matter value at {where} has the wrong type"
    else:
        message = f"front matter at {where}: {error.reason}"
    return f"{message}: {line_text!r}" if line_text else message


def _yaml_problem(source: str) -> str | None:
    """PyYAML's description of why the front matter does not parse, e.g. "mapping values are not allowed here"."""
    lines = source.splitlines()
    delimiters = [index for index, line in enumerate(lines) if line.rstrip() == "---"]
    if len(delimiters) < 2:
        return None
    frontmatter = "\n".join(lines[delimiters[0] + 1 : delimiters[1]])
    try:
        yaml.safe_load(frontmatter)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None)
        return str(problem) if problem else None
    return None
