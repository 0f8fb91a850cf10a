"""What a run of a session or a fork adds to an ordinary run, prepared before it starts (docs/agents.md).

- A run of a session starts with the session's earlier turns as history (execution_service.history.session), and
  records what it loaded as its first step (SessionHistory).
- A fork replays a stored run up to one of its steps through wrapped model and tool providers
  (execution_service.history.replay) and records where it came from (forked_from).
The run manager applies a `RunSetup`; the agent loop only sees the history messages and the wrapped providers.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentrun_core.domain import ForkOrigin, Run, SessionHistory
from agentrun_core.echo import shown
from agentrun_core.ids import session_id_problem
from execution_service.agents.errors import InvalidField
from execution_service.agents.gen_config import validate_config
from execution_service.agents.spec import AgentSpec
from execution_service.errors import HistoryUnavailable, InvalidRequest, RunNotForkable, StoredRunNotFound
from execution_service.history.replay import ForkOverrides, Replay, ReplayingModel, ReplayingTools, plan_replay
from execution_service.history.session import LoadedHistory, UnreadRun, fit_history
from execution_service.history.stored_runs import StoredRuns
from execution_service.history.transcript import ToolNamer, Turn, default_namer, run_turns
from execution_service.model.base import Message, ModelProvider
from execution_service.tools.base import ToolProvider, ToolResolutionError
from execution_service.tools.naming import sanitize_function_name

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunSetup:
    """Nothing for an ordinary run."""

    session_id: str = ""
    history: LoadedHistory | None = None
    forked_from: ForkOrigin | None = None
    replay: Replay | None = None
    # Generation config keys merged over the agent's (a fork's override).
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def history_messages(self) -> tuple[Message, ...]:
        return self.history.messages if self.history is not None else ()

    def agent(self, agent: AgentSpec) -> AgentSpec:
        return dataclasses.replace(agent, config={**agent.config, **self.config}) if self.config else agent

    def model_provider(self, provider: ModelProvider) -> ModelProvider:
        return ReplayingModel(provider, self.replay.responses) if self.replay is not None else provider

    def tool_provider(self, tools: ToolProvider) -> ToolProvider:
        return (
            ReplayingTools(tools, self.replay.outcomes, self.replay.child_run_ids) if self.replay is not None else tools
        )


def _needs_runs_service(stored: StoredRuns | None, what: str) -> StoredRuns:
    if stored is None:
        raise HistoryUnavailable(f"{what} needs RunsService, which this execution service is not connected to")
    return stored


async def tool_namer(tools: ToolProvider, agent: AgentSpec) -> ToolNamer:
    """(server, tool) -> the name the agent's model sees for it now (its own name when the agent no longer has it)."""
    try:
        resolved = await tools.resolve(list(agent.tools))
    except ToolResolutionError as exc:
        log.info("tools not resolved for the stored conversation; using their own names", extra={"error": str(exc)})
        return default_namer
    names = {(t.server, t.name): t.exposed_name for t in resolved}
    return lambda server, tool: names.get((server, tool)) or sanitize_function_name(tool)


async def session_setup(
    stored: StoredRuns | None, tools: ToolProvider, agent: AgentSpec, session_id: str, user: str
) -> RunSetup:
    """The history of `user`'s session `session_id` for a run of `agent`. Another user's session of the same id is
    another session: its runs are never read."""
    problem = session_id_problem(session_id)
    if problem is not None:
        raise InvalidRequest("session_id", problem)
    reader = _needs_runs_service(stored, "a run of a session")
    # A fork of a run of the session is a side branch: it belongs to the session, but is never its history.
    summaries = [r for r in await reader.session_runs(session_id, user) if r.forked_from is None]
    namer = await tool_namer(tools, agent)
    limit = agent.session.history_tokens
    # Newest first, each run's steps read only while the history may still reach back to it: once the runs read
    # hold more than the limit, the older ones are dropped whole without being read.
    read: list[list[Turn]] = []
    tokens = 0
    unread = list(summaries)
    while unread and tokens <= limit:
        summary = unread.pop()
        run = await reader.get(summary.id)
        if run is None:
            continue  # deleted since it was listed
        turns = run_turns(run, namer)
        read.append(turns)
        tokens += sum(t.tokens for t in turns)
    older = [UnreadRun(r.id, 1 + r.steps_taken) for r in unread]
    history = fit_history(session_id, read[::-1], limit, older)
    log.info(
        "session history loaded",
        extra={
            "session_id": session_id,
            "runs": len(summaries),
            "runs_read": len(read),
            "turns": history.step.turn_count,
            "dropped_turns": history.step.dropped_turn_count,
            "tokens": history.step.token_count,
        },
    )
    return RunSetup(session_id=session_id, history=history)


@dataclass(frozen=True, slots=True)
class ForkRequest:
    run_id: str
    from_sequence: int
    user: str
    # The user whose runs the caller may fork; None for admins.
    visible_user: str | None
    overrides: ForkOverrides = field(default_factory=ForkOverrides)


@dataclass(frozen=True, slots=True)
class PreparedFork:
    """The original's agent, task, variables, labels and model (as overridden) and the replay."""

    agent_name: str
    task: str
    variables: dict[str, str]
    labels: dict[str, str]
    model: str
    setup: RunSetup


async def fork_setup(
    stored: StoredRuns | None, tools: ToolProvider, find_agent: Callable[[str], AgentSpec], request: ForkRequest
) -> PreparedFork:
    """Reads the original and plans the replay. Raises StoredRunNotFound (not stored, or another user's),
    RunNotForkable, InvalidRequest (a bad step, override, or generation config), and what `find_agent` raises for an
    agent this service no longer has."""
    reader = _needs_runs_service(stored, "a fork")
    original = await reader.get(request.run_id)
    if original is None or (request.visible_user is not None and original.user != request.visible_user):
        raise StoredRunNotFound(request.run_id)
    if not original.status.is_terminal:
        raise RunNotForkable(
            f"run {request.run_id} is {original.status.value}: a run can be forked once it has finished"
        )
    agent = find_agent(original.agent_name)
    try:
        config = validate_config(dict(request.overrides.generation_config))
    except InvalidField as exc:
        raise InvalidRequest("overrides.generation_config_json", str(exc)) from None
    namer = await tool_namer(tools, agent)
    replay = plan_replay(original, request.from_sequence, request.overrides.tool_results, namer)
    history = await _original_history(reader, original, namer) if original.session_id else None
    return PreparedFork(
        agent_name=original.agent_name,
        task=request.overrides.task or original.task,
        variables=dict(original.variables),
        labels=dict(original.labels),
        model=request.overrides.model or original.model_name,
        setup=RunSetup(
            session_id=original.session_id,
            history=history,
            forked_from=ForkOrigin(run_id=original.id, sequence=request.from_sequence),
            replay=replay,
            config=config,
        ),
    )


async def _original_history(reader: StoredRuns, original: Run, namer: ToolNamer) -> LoadedHistory:
    """The history a run of a session started with, rebuilt from its SessionHistory step (its first): the turns of
    the runs it names, from its first turn on. The fork records the same step."""
    first = original.execution_steps[0].payload if original.execution_steps else None
    if not isinstance(first, SessionHistory):
        raise RunNotForkable(
            f"run {original.id} belongs to session {shown(original.session_id)} but has no SessionHistory step to "
            "rebuild its history from"
        )
    turns: list[Turn] = []
    for run_id in first.run_ids:
        run = await reader.get(run_id)
        if run is None or run.user != original.user:
            raise RunNotForkable(
                f"run {original.id} had run {run_id} of its session as history, which is no longer stored: its "
                "history cannot be replayed"
            )
        turns.extend(run_turns(run, namer))
    if first.first_turn is not None:
        start = (first.first_turn.run_id, first.first_turn.sequence)
        index = next((i for i, t in enumerate(turns) if (t.run_id, t.sequence) == start), 0)
        turns = turns[index:]
    return LoadedHistory(tuple(m for t in turns for m in t.messages), first)
