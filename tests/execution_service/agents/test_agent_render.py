from __future__ import annotations

from pathlib import Path

import pytest

from execution_service.agents.errors import PromptRenderError, VariablesError
from execution_service.agents.loader import load_agent
from execution_service.agents.render import PromptRenderer, render_prompt
from execution_service.agents.spec import AgentSpec
from execution_service.agents.template import references_task

from .helpers import EXAMPLES, write

TYPED = """---
model: test
input:
  schema:
    city: string
    days: integer
    ratio?: number
    metric?: boolean
    tags?(array): string
    extra?(object):
      level: integer
    mode?(enum): [fast, slow]
---
{{role "system"}}
System for {{city}}.
{{role "user"}}
days={{days}} ratio={{ratio}} metric={{#if metric}}yes{{else}}no{{/if}} tags={{#each tags}}[{{this}}]{{/each}}
level={{extra.level}} mode={{mode}}
Task: {{task}}
"""


@pytest.fixture
def typed(tmp_path: Path) -> AgentSpec:
    return load_agent(write(tmp_path, "typed.prompt", TYPED))


async def test_clock_system_user_split() -> None:
    rendered = await render_prompt(load_agent(EXAMPLES / "clock.prompt"), "What time is it in Tokyo?", {})
    assert rendered.system_instruction is not None
    assert rendered.system_instruction.startswith("You are a precise world clock.")
    assert "Tokyo" not in rendered.system_instruction
    assert rendered.user_text == "What time is it in Tokyo?"


async def test_repo_reviewer_defaults_and_override() -> None:
    agent = load_agent(EXAMPLES / "repo-reviewer.prompt")
    rendered = await render_prompt(agent, "Focus on error handling.", {})
    assert "Repository: .\n" in rendered.user_text
    assert "the latest 5" in rendered.user_text
    assert rendered.user_text.endswith("Focus on error handling.")
    rendered = await render_prompt(agent, "Review.", {"repo_path": "/src/app", "max_commits": "2"})
    assert 'repository at "/src/app"' in (rendered.system_instruction or "")
    assert "the latest 2" in rendered.user_text


async def test_files_optional_root() -> None:
    agent = load_agent(EXAMPLES / "files.prompt")
    without = await render_prompt(agent, "List the files.", {})
    assert "list_allowed_directories" in (without.system_instruction or "")
    within = await render_prompt(agent, "List the files.", {"root": "/data"})
    assert 'Work inside the directory "/data"' in (within.system_instruction or "")


async def test_typed_coercion(typed: AgentSpec) -> None:
    rendered = await render_prompt(
        typed,
        "go <now> & 'quickly'",
        {
            "city": "Paris",
            "days": " 3 ",
            "ratio": "0.25",
            "metric": "TRUE",
            "tags": '["a", "b"]',
            "extra": '{"level": 7}',
            "mode": "slow",
        },
    )
    assert rendered.system_instruction == "System for Paris."
    assert "days=3 ratio=0.25 metric=yes tags=[a][b]" in rendered.user_text
    assert "level=7 mode=slow" in rendered.user_text
    assert rendered.user_text.endswith("Task: go <now> & 'quickly'")  # not HTML-escaped


async def test_false_boolean_and_blank_optional(typed: AgentSpec) -> None:
    rendered = await render_prompt(typed, "t", {"city": "Oslo", "days": "1", "metric": "false", "ratio": ""})
    assert "metric=no" in rendered.user_text
    assert "ratio= " in rendered.user_text


async def test_missing_variables_are_all_named(typed: AgentSpec) -> None:
    with pytest.raises(VariablesError) as caught:
        await render_prompt(typed, "t", {})
    assert caught.value.missing == ["city", "days"]
    assert "city" in str(caught.value) and "days" in str(caught.value)


async def test_invalid_values_name_the_expected_type(typed: AgentSpec) -> None:
    with pytest.raises(VariablesError) as caught:
        await render_prompt(
            typed,
            "t",
            {
                "days": "three",
                "ratio": "1/2",
                "metric": "yes",
                "tags": "a,b",
                "extra": "[1]",
                "mode": "medium",
            },
        )
    error = caught.value
    assert error.missing == ["city"]
    assert set(error.invalid) == {"days", "ratio", "metric", "tags", "extra", "mode"}
    assert "integer" in error.invalid["days"]
    assert "number" in error.invalid["ratio"]
    assert "true" in error.invalid["metric"]
    assert "JSON array" in error.invalid["tags"]
    assert "JSON object" in error.invalid["extra"]
    assert "'fast'" in error.invalid["mode"] and "'slow'" in error.invalid["mode"]
    message = str(error)
    for name in ("city", "days", "ratio", "metric", "tags", "extra", "mode"):
        assert name in message


async def test_nested_values_are_checked_against_the_schema(typed: AgentSpec) -> None:
    with pytest.raises(VariablesError) as caught:
        await render_prompt(typed, "t", {"city": "x", "days": "1", "tags": "[1, 2]", "extra": '{"level": "hi"}'})
    assert set(caught.value.invalid) == {"tags", "extra"}


async def test_unknown_variables_are_rejected(typed: AgentSpec) -> None:
    with pytest.raises(VariablesError) as caught:
        await render_prompt(typed, "t", {"city": "x", "days": "1", "dayz": "2"})
    assert caught.value.unknown == ["dayz"]
    assert "dayz" in str(caught.value) and "days" in str(caught.value)


async def test_task_is_not_a_variable(typed: AgentSpec) -> None:
    with pytest.raises(VariablesError) as caught:
        await render_prompt(typed, "t", {"city": "x", "days": "1", "task": "again"})
    assert "task" in caught.value.invalid


async def test_agent_without_variables_rejects_any(tmp_path: Path) -> None:
    agent = load_agent(write(tmp_path, "plain.prompt", "---\nmodel: test\n---\nDo: {{task}}\n"))
    with pytest.raises(VariablesError, match="unknown variables: 'x'"):
        await render_prompt(agent, "t", {"x": "1"})


async def test_task_appended_when_not_referenced(tmp_path: Path) -> None:
    text = '---\nmodel: test\n---\n{{role "system"}}\nBe brief.\n{{role "user"}}\nContext: none.\n'
    rendered = await render_prompt(load_agent(write(tmp_path, "noref.prompt", text)), "Say hi.", {})
    assert rendered.system_instruction == "Be brief."
    assert rendered.user_text == "Context: none.\n\nSay hi."


async def test_task_appended_when_template_is_only_system(tmp_path: Path) -> None:
    text = '---\nmodel: test\n---\n{{role "system"}}\nBe brief.\n'
    rendered = await render_prompt(load_agent(write(tmp_path, "sys.prompt", text)), "Say hi.", {})
    assert rendered.system_instruction == "Be brief."
    assert rendered.user_text == "Say hi."


async def test_no_system_role_gives_none(tmp_path: Path) -> None:
    rendered = await render_prompt(load_agent(write(tmp_path, "u.prompt", "Please: {{task}}\n")), "x", {})
    assert rendered.system_instruction is None
    assert rendered.user_text == "Please: x"


async def test_other_roles_are_concatenated_into_user_text(tmp_path: Path) -> None:
    text = '{{role "system"}}S1\n{{role "user"}}U1\n{{role "model"}}M1\n{{role "user"}}U2 {{task}}\n'
    rendered = await render_prompt(load_agent(write(tmp_path, "roles.prompt", text)), "T", {})
    assert rendered.system_instruction == "S1"
    assert rendered.user_text == "U1\n\nM1\n\nU2 T"


async def test_render_compiles_once_per_version(tmp_path: Path) -> None:
    renderer = PromptRenderer()
    path = write(tmp_path, "c.prompt", "Hello {{task}}\n")
    agent = load_agent(path)
    await renderer.render(agent, "a", {})
    await renderer.render(agent, "b", {})
    assert len(renderer._cache) == 1
    path.write_text("Bye {{task}}\n", encoding="utf-8")
    changed = load_agent(path)
    assert (await renderer.render(changed, "c", {})).user_text == "Bye c"
    assert len(renderer._cache) == 2


async def test_media_parts_are_refused(tmp_path: Path) -> None:
    agent = load_agent(write(tmp_path, "media.prompt", '{{task}} {{media url="https://example.com/a.png"}}\n'))
    with pytest.raises(PromptRenderError, match="MediaPart"):
        await render_prompt(agent, "t", {})


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{task}}", True),
        ("{{ task }}", True),
        ("{{{task}}}", True),
        ("{{~task~}}", True),
        ("{{#if task}}x{{/if}}", True),
        ("{{json task}}", True),
        ("{{#each xs}}{{@root.task}}{{/each}}", True),
        ("{{this.task}}", True),
        ("task", False),
        ("{{tasks}}", False),
        ("{{other.task}}", False),
        ('{{role "task"}}', False),
        ("{{! task }}", False),
        ("{{!-- {{task}} --}}", False),
    ],
)
def test_references_task(template: str, expected: bool) -> None:
    assert references_task(template) is expected
