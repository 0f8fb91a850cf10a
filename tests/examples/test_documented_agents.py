"""Every agent file shown in README.md and docs/ loads as written: a reader copies them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from execution_service.agents.loader import load_agent_from_bytes

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# A fenced block whose first line opens a front matter: an agent file.
_AGENT_BLOCK = re.compile(r"^```(?:yaml|handlebars)?\n(---\n.*?)^```", re.MULTILINE | re.DOTALL)


def _agent_blocks() -> list[tuple[str, str]]:
    found = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for match in _AGENT_BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{document.relative_to(REPO)}:{line}", match.group(1)))
    return found


BLOCKS = _agent_blocks()


def test_the_documents_show_agent_files() -> None:
    assert len(BLOCKS) >= 4, BLOCKS


@pytest.mark.parametrize(("where", "text"), BLOCKS, ids=[where for where, _ in BLOCKS])
def test_a_documented_agent_file_loads(where: str, text: str) -> None:
    spec = load_agent_from_bytes(Path("documented.prompt"), text.encode())
    assert spec.name == "documented"
