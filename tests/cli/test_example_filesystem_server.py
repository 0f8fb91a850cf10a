"""examples/mcp_servers/filesystem_server.py: read-only tools rooted at one directory, in-process client."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
from mcp import Client

REPO = Path(__file__).resolve().parents[2]


def load_module() -> ModuleType:
    path = REPO / "examples/mcp_servers/filesystem_server.py"
    spec = importlib.util.spec_from_file_location("filesystem_server", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "guide.md").write_text("# Guide\nhello\n")
    (root / "main.py").write_text("print('hi')\n" * 100)
    (root / "blob.bin").write_bytes(b"\x00\x01\x02")
    (root / ".git").mkdir()
    (root / ".git" / "config.md").write_text("hidden")
    (tmp_path / "secret.txt").write_text("outside")
    (root / "escape").symlink_to(tmp_path / "secret.txt")
    return root.resolve()


async def call(client: Client, tool: str, **arguments: object) -> tuple[bool, str]:
    result = await client.call_tool(tool, arguments)
    return bool(result.is_error), "".join(getattr(c, "text", "") for c in result.content)


async def test_tools(tree: Path) -> None:
    server = load_module().build_server(tree)
    root = str(tree)
    async with Client(server) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"list_directory", "read_file", "search_files", "list_allowed_directories"} <= names
        assert await call(client, "list_allowed_directories") == (False, root)
        error, listing = await call(client, "list_directory", path=".")
        assert not error and "[DIR]  docs/" in listing and "[FILE] main.py (1200 bytes)" in listing
        assert await call(client, "read_file", path="docs/guide.md") == (False, "# Guide\nhello\n")
        error, text = await call(client, "read_file", path="main.py", max_bytes=12)
        assert not error and text.startswith("print('hi')\n") and "truncated at 12 of 1200 bytes" in text
        error, found = await call(client, "search_files", pattern="*.md")
        assert not error and found.splitlines() == ["docs/guide.md"]  # .git is skipped
        error, tree_text = await call(client, "directory_tree", path=".", max_depth=2)
        assert not error and "  guide.md" in tree_text


@pytest.mark.parametrize("path", ["../secret.txt", "/etc/passwd", "escape", "docs/../../secret.txt"])
async def test_paths_outside_the_root_are_refused(tree: Path, path: str) -> None:
    async with Client(load_module().build_server(tree)) as client:
        error, message = await call(client, "read_file", path=path)
        assert error and "outside the allowed directory" in message


async def test_binary_files_are_refused(tree: Path) -> None:
    async with Client(load_module().build_server(tree)) as client:
        error, message = await call(client, "read_file", path="blob.bin")
        assert error and "binary" in message


def test_example_mcp_json_shape() -> None:
    config = json.loads((REPO / "examples/mcp.json").read_text())
    servers = config["mcpServers"]
    assert servers["time"] == {"command": "mcp-server-time", "args": ["--local-timezone", "UTC"]}
    # The git server works in (and is confined to) $AGENTRUN_GIT_REPOSITORY, the file server reads under
    # $AGENTRUN_FILES_ROOT; both default to the directory ExecutionService runs in.
    assert servers["git"] == {
        "command": "mcp-server-git",
        "args": ["--repository", "."],
        "cwd": "${AGENTRUN_GIT_REPOSITORY:-.}",
    }
    assert servers["filesystem"]["args"] == [
        "examples/mcp_servers/filesystem_server.py",
        "--root",
        "${AGENTRUN_FILES_ROOT:-.}",
    ]
    assert (REPO / servers["filesystem"]["args"][0]).is_file()
