"""Render an agent's prompt for one run: system instruction + first user message.

The task always reaches the model: it is passed to the template as the variable `task`, and when the template
never references {{task}} (see `template.references_task`) it is appended to the user text as its last paragraph.

Messages with role "system" form the system instruction; every other message (user, model, tool) is concatenated,
in order, into the user text, separated by blank lines. Templates are compiled once per agent version.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from dotpromptz import DataArgument, Dotprompt, Message, PromptFunction, Role, TextPart
from dotpromptz_handlebars import EscapeFunction

from execution_service.agents.errors import PromptRenderError, VariablesError
from execution_service.agents.input_schema import TASK
from execution_service.agents.spec import AgentSpec, RenderedPrompt
from execution_service.agents.template import references_task
from execution_service.agents.variables import coerce_variables

__all__ = ["PromptRenderError", "PromptRenderer", "VariablesError", "render_prompt"]

log = logging.getLogger(__name__)

_CACHE_SIZE = 256


@dataclass(frozen=True, slots=True)
class _Compiled:
    render: PromptFunction[Any]
    references_task: bool


class PromptRenderer:
    """Compiles each agent version once and renders it. One shared instance serves the whole process."""

    def __init__(self, cache_size: int = _CACHE_SIZE) -> None:
        # Values are inserted as they are: prompts are not HTML.
        self._dotprompt = Dotprompt(escape_fn=EscapeFunction.NO_ESCAPE)
        self._cache: OrderedDict[str, _Compiled] = OrderedDict()
        self._cache_size = cache_size

    async def render(self, agent: AgentSpec, task: str, variables: dict[str, str]) -> RenderedPrompt:
        """Raises VariablesError for variables that do not fit the input schema, PromptRenderError otherwise."""
        values = coerce_variables(agent.input_schema, variables)
        compiled = await self._compiled(agent)
        try:
            rendered = await compiled.render(DataArgument(input={**values, TASK: task}))
            system, user = _split(rendered.messages)
        except (ValueError, TypeError, LookupError, RecursionError) as exc:
            log.warning("prompt render failed: %s", exc, extra={"agent": agent.name, "agent_version": agent.version})
            raise PromptRenderError(agent.name, f"template failed to render: {exc}") from exc
        if not compiled.references_task and task:
            user = f"{user}\n\n{task}" if user else task
        return RenderedPrompt(system_instruction=system or None, user_text=user)

    async def _compiled(self, agent: AgentSpec) -> _Compiled:
        cached = self._cache.get(agent.version)
        if cached is not None:
            self._cache.move_to_end(agent.version)
            return cached
        try:
            function: PromptFunction[Any] = await self._dotprompt.compile(agent.source)
        except (ValueError, TypeError, RecursionError) as exc:
            log.warning("prompt compile failed: %s", exc, extra={"agent": agent.name, "agent_version": agent.version})
            raise PromptRenderError(agent.name, f"template does not compile: {exc}") from exc
        compiled = _Compiled(function, references_task(function.prompt.template))
        self._cache[agent.version] = compiled
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return compiled


def _split(messages: list[Message]) -> tuple[str, str]:
    system: list[str] = []
    user: list[str] = []
    for message in messages:
        text = _text_of(message).strip()
        if text:
            (system if message.role == Role.SYSTEM else user).append(text)
    return "\n\n".join(system), "\n\n".join(user)


def _text_of(message: Message) -> str:
    texts: list[str] = []
    for part in message.content:
        if not isinstance(part, TextPart):
            raise ValueError(f"the template produced a {type(part).__name__}; only text is supported")
        texts.append(part.text)
    return "".join(texts)


_default_renderer = PromptRenderer()


async def render_prompt(agent: AgentSpec, task: str, variables: dict[str, str]) -> RenderedPrompt:
    """Render `agent` for one run (see the module docstring). Raises VariablesError or PromptRenderError."""
    return await _default_renderer.render(agent, task, variables)
