"""A run and its sub-agent runs as a tree: each node with its agent, status, own tokens, cost and duration."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from agentrun.runs.v1 import run_pb2
from rich.console import Group, RenderableType
from rich.text import Text
from rich.tree import Tree

from agentrun_cli.render import format as fmt


def has_descendants(run: run_pb2.Run, descendants: Sequence[run_pb2.Run]) -> bool:
    return bool(descendants) or run.HasField("token_usage_with_descendants")


def node_label(run: run_pb2.Run, *, highlight: bool = False) -> Text:
    """`researcher  COMPLETED  1,234 tokens  0.0012 USD  2.31 s  <id>  (call call-001)`."""
    label = Text.assemble(
        (run.agent_name, "bold" if highlight else ""),
        "  ",
        fmt.status_text(run.status),
        f"  {fmt.count(fmt.total_tokens(run.token_usage))} tokens",
        f"  {fmt.cost(run.cost) if run.HasField('cost') else fmt.NONE}",
        f"  {fmt.optional_duration(run, 'duration')}",
        ("  " + run.id, "cyan"),
    )
    if run.parent_tool_call_id:
        label.append(f"  (call {run.parent_tool_call_id})", style="dim")
    return label


def run_tree(run: run_pb2.Run, descendants: Sequence[run_pb2.Run], *, truncated: bool = False) -> RenderableType:
    """`run` at the top, each descendant under its parent in start-time order (the order given). A descendant whose
    parent is not among them (not recorded yet, or beyond the cap) hangs under `run`, marked."""
    children: dict[str, list[run_pb2.Run]] = defaultdict(list)
    known = {run.id, *(d.id for d in descendants)}
    orphans: list[run_pb2.Run] = []
    for descendant in descendants:
        if descendant.parent_run_id in known:
            children[descendant.parent_run_id].append(descendant)
        else:
            orphans.append(descendant)

    top = Tree(node_label(run, highlight=True), guide_style="dim")

    def grow(node: Tree, parent_id: str) -> None:
        for child in children.get(parent_id, ()):
            grow(node.add(node_label(child)), child.id)

    grow(top, run.id)
    for orphan in orphans:
        label = node_label(orphan)
        label.append(f"  (parent {orphan.parent_run_id} not shown)", style="yellow")
        grow(top.add(label), orphan.id)
    shown = fmt.count(len(descendants))
    title = Text(f"runs ({shown} shown; more are under this one)" if truncated else f"runs ({shown} under this one)")
    title.stylize("bold")
    parts: list[RenderableType] = [title, top]
    if truncated:
        parts.append(
            Text(
                f"GetRun returned only the first {shown} by start time (at most 500, fewer when they are large); "
                f"`agentrun runs list --root {run.root_run_id or run.id}` lists the whole tree",
                style="dim",
            )
        )
    return Group(*parts)
