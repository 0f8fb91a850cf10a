"""A small read-only filesystem MCP server (stdio), rooted at one directory.

    python examples/mcp_servers/filesystem_server.py --root .

Tools: list_allowed_directories, list_directory, directory_tree, read_file, search_files. Every path is taken
relative to the root (an absolute path must lie inside it); a path that resolves outside the root, symbolic links
included, is refused with a tool error. Nothing is ever written.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
from collections.abc import Iterator
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

DEFAULT_READ_BYTES = 64 * 1024
MAX_READ_BYTES = 1024 * 1024
MAX_LIST_ENTRIES = 1000
MAX_SEARCH_RESULTS = 500
MAX_TREE_ENTRIES = 2000
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", ".venv", "venv", "node_modules", "__pycache__", ".mypy_cache"})


class Sandbox:
    """Resolves user paths inside `root` and refuses everything else."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def resolve(self, path: str) -> Path:
        candidate = Path(path).expanduser() if path else Path(".")
        full = (candidate if candidate.is_absolute() else self.root / candidate).resolve()
        if full != self.root and self.root not in full.parents:
            raise ToolError(f"{path!r} is outside the allowed directory {self.root}")
        return full

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() or "."

    def list_directory(self, path: str = ".") -> str:
        directory = self._existing_dir(path)
        entries = sorted(directory.iterdir(), key=lambda p: (not p.is_dir(), p.name))
        lines = []
        for entry in entries[:MAX_LIST_ENTRIES]:
            if entry.is_dir():
                lines.append(f"[DIR]  {entry.name}/")
            else:
                lines.append(f"[FILE] {entry.name} ({_size(entry)} bytes)")
        if len(entries) > MAX_LIST_ENTRIES:
            lines.append(f"... {len(entries) - MAX_LIST_ENTRIES} more entries not shown")
        return "\n".join(lines) if lines else f"{self.relative(directory)} is empty"

    def directory_tree(self, path: str = ".", max_depth: int = 3) -> str:
        directory = self._existing_dir(path)
        lines = [f"{self.relative(directory)}/"]
        for depth, entry in self._walk(directory, max(1, min(max_depth, 10))):
            if len(lines) > MAX_TREE_ENTRIES:
                lines.append("... (more entries not shown)")
                break
            lines.append(f"{'  ' * depth}{entry.name}{'/' if entry.is_dir() else ''}")
        return "\n".join(lines)

    def read_file(self, path: str, max_bytes: int = DEFAULT_READ_BYTES) -> str:
        file = self.resolve(path)
        if not file.is_file():
            raise ToolError(f"{path!r} is not a file")
        limit = max(1, min(max_bytes, MAX_READ_BYTES))
        with file.open("rb") as handle:
            data = handle.read(limit + 1)
        if b"\x00" in data[:8192]:
            raise ToolError(f"{path!r} looks like a binary file; only text files can be read")
        text = data[:limit].decode("utf-8", errors="replace")
        if len(data) > limit:
            text += f"\n... (truncated at {limit} of {_size(file)} bytes; raise max_bytes to read more)"
        return text

    def search_files(self, pattern: str, path: str = ".", max_results: int = 100) -> str:
        """Paths (relative to the root) whose name or relative path matches the glob `pattern`."""
        directory = self._existing_dir(path)
        limit = max(1, min(max_results, MAX_SEARCH_RESULTS))
        matches: list[str] = []
        for _, entry in self._walk(directory, max_depth=64):
            relative = self.relative(entry)
            if fnmatch.fnmatch(entry.name, pattern) or fnmatch.fnmatch(relative, pattern):
                matches.append(relative + ("/" if entry.is_dir() else ""))
                if len(matches) >= limit:
                    matches.append(f"... (stopped at {limit} results)")
                    break
        return "\n".join(matches) if matches else f"no file matches {pattern!r}"

    def _existing_dir(self, path: str) -> Path:
        directory = self.resolve(path)
        if not directory.is_dir():
            raise ToolError(f"{path!r} is not a directory")
        return directory

    def _walk(self, directory: Path, max_depth: int, depth: int = 1) -> Iterator[tuple[int, Path]]:
        try:
            entries = sorted(directory.iterdir(), key=lambda p: p.name)
        except OSError:
            return
        for entry in entries:
            if not self._inside(entry):
                continue
            yield depth, entry
            if entry.is_dir() and not entry.is_symlink() and entry.name not in SKIPPED_DIRS and depth < max_depth:
                yield from self._walk(entry, max_depth, depth + 1)

    def _inside(self, entry: Path) -> bool:
        real = entry.resolve()
        return real == self.root or self.root in real.parents


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def build_server(root: Path) -> MCPServer:
    sandbox = Sandbox(root)
    server = MCPServer("filesystem", instructions=f"Read-only access to the files under {sandbox.root}.")

    @server.tool()
    def list_allowed_directories() -> str:
        """The directory this server may read; every path is relative to it."""
        return str(sandbox.root)

    @server.tool()
    def list_directory(path: str = ".") -> str:
        """Lists the files and subdirectories of a directory (relative to the allowed directory)."""
        return sandbox.list_directory(path)

    @server.tool()
    def directory_tree(path: str = ".", max_depth: int = 3) -> str:
        """An indented tree of a directory, down to max_depth levels (VCS and virtualenv folders are skipped)."""
        return sandbox.directory_tree(path, max_depth)

    @server.tool()
    def read_file(path: str, max_bytes: int = DEFAULT_READ_BYTES) -> str:
        """Reads a text file, at most max_bytes bytes (default 64 KiB, at most 1 MiB)."""
        return sandbox.read_file(path, max_bytes)

    @server.tool()
    def search_files(pattern: str, path: str = ".", max_results: int = 100) -> str:
        """Finds files and directories whose name or relative path matches a glob pattern such as "*.py"."""
        return sandbox.search_files(pattern, path, max_results)

    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.getcwd(), help="the only directory the tools may read (default: cwd)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if not root.is_dir():
        parser.error(f"--root {args.root!r} is not a directory")
    build_server(root).run()


if __name__ == "__main__":
    main()
