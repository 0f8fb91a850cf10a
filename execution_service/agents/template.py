"""Static checks on an agent's Handlebars template (the body after the front matter)."""

from __future__ import annotations

import re

from dotpromptz_handlebars import EscapeFunction, Handlebars

from execution_service.agents.errors import InvalidField

ROLES = ("system", "user", "model", "tool")

_COMMENT = re.compile(r"\{\{!--.*?--\}\}|\{\{!.*?\}\}", re.DOTALL)
_RAW_BLOCK = re.compile(r"\{\{\{\{raw\}\}\}\}.*?\{\{\{\{/raw\}\}\}\}", re.DOTALL)
_MUSTACHE_BODY = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_STRING_LITERAL = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|\'[^\'\\]*(?:\\.[^\'\\]*)*\'')
_ROLE_CALL = re.compile(r"^[{~\s]*role\s+[\"']([^\"']*)[\"']")
# `task` as a path of its own: {{task}}, {{{task}}}, {{~task~}}, {{#if task}}, {{json task}}, {{this.task}},
# {{@root.task}}, {{helper x=task}}; not {{other.task}} or {{tasks}}.
_TASK_REF = re.compile(r"(?:^|[\s(=~#{&^])(?:this\.|this/|@root\.|\.\./)*task(?=$|[\s)}~])")


def check_template(template: str) -> None:
    """Raises InvalidField when the template does not compile or uses a role dotprompt does not know."""
    try:
        Handlebars(escape_fn=EscapeFunction.NO_ESCAPE).compile(template)
    except ValueError as exc:
        raise InvalidField("template", f"does not compile: {exc}") from exc
    for body in _mustache_bodies(template, strip_literals=False):
        role = _ROLE_CALL.match(body)
        if role and role.group(1) not in ROLES:
            hint = ' (the model\'s own turns use "model")' if role.group(1) == "assistant" else ""
            raise InvalidField("template", f'unknown role "{role.group(1)}"; use one of {", ".join(ROLES)}{hint}')


def references_task(template: str) -> bool:
    """Whether any tag of the template reads the `task` variable (comments and string literals do not count).

    A conditional such as {{#if task}} counts as a reference even though it does not print the task.
    """
    return any(_TASK_REF.search(body) for body in _mustache_bodies(template, strip_literals=True))


def _mustache_bodies(template: str, *, strip_literals: bool) -> list[str]:
    cleaned = _RAW_BLOCK.sub("", _COMMENT.sub("", template))
    bodies = [match.group(1) for match in _MUSTACHE_BODY.finditer(cleaned)]
    if strip_literals:
        bodies = [_STRING_LITERAL.sub('""', body) for body in bodies]
    return bodies
