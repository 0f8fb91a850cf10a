"""The agents in one directory: every *.prompt file (not recursive), reloaded cheaply when files change."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from execution_service.agents.composition import composition_problems
from execution_service.agents.errors import AgentLoadError
from execution_service.agents.loader import AGENT_SUFFIX, load_agent_from_bytes
from execution_service.agents.spec import AgentLoadProblem, AgentSpec

log = logging.getLogger(__name__)

# A file modified this close to when we read it may change again within the file system's timestamp granularity
# without its (mtime, size) changing: such "racy" entries are re-hashed on the next reload (as git does).
_RACY_WINDOW_NS = 2_000_000_000


@dataclass(frozen=True, slots=True)
class _Entry:
    stat_key: tuple[int, int, int]  # (st_mtime_ns, st_size, st_ino)
    read_at_ns: int
    digest: str
    result: AgentSpec | AgentLoadProblem

    @property
    def racy(self) -> bool:
        return self.read_at_ns - self.stat_key[0] < _RACY_WINDOW_NS


class AgentRegistry:
    """Loads agents from `directory`. A broken file becomes an AgentLoadProblem; it never stops the others.

    `reload()` re-parses only files whose content changed (stat first, then sha256), so it is cheap enough to
    call on every ListAgents. Safe to call from several threads.
    """

    def __init__(self, directory: Path, default_model: str, *, known_servers: Collection[str] | None = None) -> None:
        """`known_servers`: the MCP servers mcp.json declares; an agent whose tools name another one is a problem
        (reported at load and by ListAgents) rather than a run that fails. None: not checked."""
        self._directory = directory
        self._default_model = default_model
        self._known_servers = None if known_servers is None else frozenset(known_servers)
        self._lock = threading.Lock()
        self._entries: dict[Path, _Entry] = {}
        self._agents: dict[str, AgentSpec] = {}
        self._problems: list[AgentLoadProblem] = []

    @property
    def directory(self) -> Path:
        return self._directory

    def load(self) -> None:
        """Load every agent file from scratch, logging each problem at WARNING."""
        with self._lock:
            self._scan(fresh=True)

    def reload(self) -> None:
        """Pick up added, changed and removed files. Problems are logged only when new or changed."""
        with self._lock:
            self._scan(fresh=False)

    def get(self, name: str) -> AgentSpec | None:
        return self._agents.get(name)

    def agents(self) -> list[AgentSpec]:
        """Loaded agents sorted by name."""
        return sorted(self._agents.values(), key=lambda agent: agent.name)

    def problems(self) -> list[AgentLoadProblem]:
        """One entry per file that could not be loaded (or one for a missing directory), sorted by path."""
        return list(self._problems)

    def _scan(self, *, fresh: bool) -> None:
        """Rebuild the agents and problems. `fresh` re-parses every file and logs every problem."""
        try:
            if not self._directory.is_dir():
                raise NotADirectoryError(f"no such directory: {self._directory}")
            paths = sorted(p for p in self._directory.glob(f"*{AGENT_SUFFIX}") if p.is_file())
        except OSError as exc:
            message = f"cannot read the agents directory: {exc}"
            if fresh or not any(p.message == message for p in self._problems):
                log.warning("agents directory unusable", extra={"path": str(self._directory), "problem": message})
            self._entries, self._agents = {}, {}
            self._problems = [AgentLoadProblem(self._directory, message)]
            return
        entries: dict[Path, _Entry] = {}
        for path in paths:
            previous = None if fresh else self._entries.get(path)
            entry = self._refresh(path, previous)
            if entry is None:
                continue
            entries[path] = entry
            changed = previous is None or previous.result != entry.result
            if isinstance(entry.result, AgentLoadProblem) and changed:
                log.warning(
                    "agent file not loaded: %s",
                    entry.result.message,
                    extra={"path": str(path), "problem": entry.result.message},
                )
        self._log_changes(entries)
        self._entries = entries
        loaded = {e.result.name: e.result for e in entries.values() if isinstance(e.result, AgentSpec)}
        broken = frozenset(
            path.name.removesuffix(AGENT_SUFFIX)
            for path, entry in entries.items()
            if isinstance(entry.result, AgentLoadProblem)
        )
        composed = composition_problems(loaded, broken)
        problems = [e.result for e in entries.values() if isinstance(e.result, AgentLoadProblem)]
        before = set(self._problems)
        for name, message in composed.items():
            problem = AgentLoadProblem(loaded.pop(name).path, message)
            if fresh or problem not in before:
                log.warning("agent not usable: %s", message, extra={"path": str(problem.path), "problem": message})
            problems.append(problem)
        self._agents = loaded
        self._problems = sorted(problems, key=lambda problem: problem.path)

    def _refresh(self, path: Path, previous: _Entry | None) -> _Entry | None:
        """The entry for `path`, re-using `previous` (not re-parsing) when the content did not change.

        None if the file vanished. Never raises: any failure becomes a problem entry.
        """
        try:
            stat = path.stat()
            stat_key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if previous is not None and previous.stat_key == stat_key and not previous.racy:
                return previous
            read_at_ns = time.time_ns()
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            problem = AgentLoadProblem(path, f"cannot read the file: {exc.strerror or exc}")
            return _Entry((0, 0, 0), 0, "", problem)
        digest = hashlib.sha256(data).hexdigest()
        if previous is not None and previous.digest == digest:
            return _Entry(stat_key, read_at_ns, digest, previous.result)
        result: AgentSpec | AgentLoadProblem
        try:
            result = load_agent_from_bytes(path, data, default_model=self._default_model)
            unknown = self._unknown_servers(result)
            if unknown:
                result = AgentLoadProblem(path, unknown)
        except AgentLoadError as exc:
            result = AgentLoadProblem(path, exc.message)
        except Exception as exc:  # a bug here or in dotpromptz must not stop the other files from loading
            log.exception("unexpected error loading agent file", extra={"path": str(path)})
            result = AgentLoadProblem(path, f"unexpected error while loading ({type(exc).__name__}: {exc})")
        return _Entry(stat_key, read_at_ns, digest, result)

    def _unknown_servers(self, agent: AgentSpec) -> str:
        """What is wrong with the MCP servers `agent`'s tools name ("" when nothing, or when not checked)."""
        if self._known_servers is None:
            return ""
        bad = [p for p in agent.tools if p.partition("/")[0] not in self._known_servers]
        if not bad:
            return ""
        declared = ", ".join(sorted(self._known_servers)) or "none"
        named = ", ".join(repr(p) for p in bad)
        verb = "names" if len(bad) == 1 else "name"
        return f"tools: {named} {verb} an MCP server that mcp.json does not declare (declared: {declared})"

    def _log_changes(self, entries: dict[Path, _Entry]) -> None:
        for path, entry in entries.items():
            previous = self._entries.get(path)
            if isinstance(entry.result, AgentSpec) and (previous is None or previous.result != entry.result):
                agent = entry.result
                log.info("agent loaded", extra={"agent": agent.name, "agent_version": agent.version, "path": str(path)})
        for path in self._entries.keys() - entries.keys():
            log.info("agent file removed", extra={"path": str(path)})
