"""Helpers for the agent tests."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = REPO_ROOT / "examples" / "agents"

GOOD_AGENT = """---
description: A good agent.
model: googleai/gemini-2.5-flash
tools: [time/*]
---
{{role "system"}}
You are good.

{{role "user"}}
{{task}}
"""


def write(directory: Path, filename: str, text: str) -> Path:
    path = directory / filename
    path.write_text(text, encoding="utf-8")
    return path
