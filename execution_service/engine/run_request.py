"""What a start request is (StartRun) and how one is checked before a run starts: the agent it names, the sizes of its
texts and labels, and its prompt rendered. Errors name the field (execution_service.errors), so the client gets an
INVALID_ARGUMENT, NOT_FOUND or FAILED_PRECONDITION it can act on."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agentrun_core.echo import shown
from agentrun_core.labels import label_problem
from execution_service.agents.errors import PromptRenderError
from execution_service.agents.registry import AgentRegistry
from execution_service.agents.render import VariablesError, render_prompt
from execution_service.agents.spec import AgentSpec, RenderedPrompt
from execution_service.engine.child_runs import ParentRun
from execution_service.errors import AgentNotFound, AgentUnusable, InvalidRequest

if TYPE_CHECKING:
    from execution_service.engine.manager import ManagerLimits


@dataclass(frozen=True, slots=True)
class StartRun:
    agent_name: str
    task: str
    user: str
    variables: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    run_id: str = ""
    model: str = ""
    trace_id: str = ""
    # Set for a child run (a sub-agent's tool call, engine.child_runs): its parent.
    parent: ParentRun | None = None
    # Continue this session of the user's (docs/agents.md, Sessions).
    session_id: str = ""


# A model name is a short identifier (gemini-2.5-flash, googleai/...); RunsService stores at most this much of it.
MAX_MODEL_NAME_CHARS = 200


def find_agent(agents: AgentRegistry, name: str) -> AgentSpec:
    """The agent a request names: INVALID_ARGUMENT when empty, NOT_FOUND (with the agents there are) when unknown."""
    if not name:
        raise InvalidRequest("agent_name", "must not be empty")
    agent = agents.get(name)
    if agent is None:
        known = ", ".join(a.name for a in agents.agents()) or "none"
        raise AgentNotFound(f"agent {shown(name)} not found; available agents: {known}")
    return agent


def check_sizes(request: StartRun, limits: ManagerLimits) -> None:
    """Refuses (InvalidRequest, naming the field) a request whose texts are empty, too large or hold NUL characters,
    or whose labels are too many or malformed."""
    if not request.task.strip():
        raise InvalidRequest("task", "must not be empty")
    if len(request.model) > MAX_MODEL_NAME_CHARS:
        raise InvalidRequest("model", f"is {len(request.model)} characters, over the cap of {MAX_MODEL_NAME_CHARS}")
    texts = {
        "task": [request.task],
        "variables": [*request.variables.keys(), *request.variables.values()],
        "labels": [*request.labels.keys(), *request.labels.values()],
    }
    for name, values in texts.items():
        if any("\x00" in value for value in values):
            raise InvalidRequest(name, "must not contain NUL characters")
    task_bytes = len(request.task.encode())
    if task_bytes > limits.max_task_bytes:
        raise InvalidRequest("task", f"is {task_bytes} bytes, over the cap of {limits.max_task_bytes} bytes")
    var_bytes = sum(len(k.encode()) + len(v.encode()) for k, v in request.variables.items())
    if var_bytes > limits.max_variables_bytes:
        raise InvalidRequest("variables", f"are {var_bytes} bytes, over the cap of {limits.max_variables_bytes} bytes")
    if len(request.labels) > limits.max_labels:
        raise InvalidRequest("labels", f"has {len(request.labels)} entries, over the cap of {limits.max_labels}")
    for key, value in request.labels.items():
        problem = label_problem(key, value)
        if problem is not None:
            raise InvalidRequest("labels", problem)


async def render_request(agent: AgentSpec, request: StartRun) -> RenderedPrompt:
    """The agent's prompt for the request's task and variables: InvalidRequest for variables the prompt cannot take,
    AgentUnusable for a prompt that cannot be rendered at all."""
    try:
        return await render_prompt(agent, request.task, request.variables)
    except VariablesError as exc:
        raise InvalidRequest("variables", str(exc)) from None
    except PromptRenderError as exc:
        raise AgentUnusable(f"agent {agent.name!r} cannot be rendered: {exc}") from None


def request_digest(agent_name: str, task: str, variables: Mapping[str, str], model: str) -> str:
    """What makes two start requests one run's (the second a retry): the agent, the task, the variables and the model
    asked for ("" for the agent's), as a hex SHA-256. The labels are left out: they describe a run, they do not change
    what it does."""
    same = [agent_name, task, sorted(variables.items()), model]
    return hashlib.sha256(json.dumps(same, separators=(",", ":")).encode()).hexdigest()


def digest_of(request: StartRun) -> str:
    return request_digest(request.agent_name, request.task, request.variables, request.model)


def is_retry_of(request: StartRun, user: str, agent_name: str, digest: str = "") -> bool:
    """Whether `request`, naming the run id of a run of `user` and `agent_name` ("" when not known yet) started by a
    request of `digest` (request_digest; "" when not known), retries the request that started it (and reattaches to
    it) rather than reusing its id for another run: the same caller, agent, task, variables and model (a key of
    idempotency sent again with other parameters is refused, as payment APIs refuse it)."""
    return user == request.user and agent_name in ("", request.agent_name) and digest in ("", digest_of(request))
