"""A live run's place in its tree of sub-agent runs: its ancestors, how deep its descendants may go, and the token
usage and cost of its subtree (kept as its descendants' model calls happen, so a parent's token budget covers its
children while they run)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from agentrun_core.domain import Cost, TokenUsage


@dataclass(frozen=True, slots=True)
class BudgetExceeded:
    """A token budget the run's tree went over: its own (`own`), or an ancestor's (`run_id`, `agent`)."""

    used: int
    budget: int
    run_id: str
    agent: str
    own: bool
    # The run's descendants' tokens are part of `used`.
    with_descendants: bool


@dataclass(eq=False, slots=True)
class RunNode:
    run_id: str
    agent: str
    # The run's agent's limits.token_budget (0: none) and limits.max_depth.
    token_budget: int
    max_depth: int
    parent: RunNode | None = None
    tool_call_id: str = ""
    # Own usage plus every descendant's so far (their model calls are added as they happen).
    usage_with_descendants: TokenUsage = field(default_factory=TokenUsage)
    # The cost of the run's finished children, with their descendants (None while none had a known price).
    children_cost: Cost | None = None
    # Children started so far.
    children: int = 0
    # The children whose nodes are under this one (their usage counts here as it happens); in the durable mode, a
    # child that ran elsewhere (another replica, before a restart) is not, and is counted when it ends.
    linked: set[str] = field(default_factory=set)

    @property
    def depth(self) -> int:
        return 0 if self.parent is None else self.parent.depth + 1

    @property
    def root(self) -> RunNode:
        return self if self.parent is None else self.parent.root

    def ancestors(self) -> Iterator[RunNode]:
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    def child(self, run_id: str, agent: str, token_budget: int, max_depth: int, tool_call_id: str) -> RunNode:
        self.children += 1
        self.linked.add(run_id)
        return RunNode(run_id, agent, token_budget, max_depth, parent=self, tool_call_id=tool_call_id)

    def child_ended_elsewhere(self, run_id: str, usage_with_descendants: TokenUsage) -> None:
        """A child whose node was not under this one ended (durable mode: it ran on another replica, or before a
        restart, or its result was replayed): its tokens count now. Nothing for a child whose node is under this one
        (counted as they happened)."""
        if run_id in self.linked:
            return
        self.linked.add(run_id)
        self.children += 1
        self.add_usage(usage_with_descendants)

    def child_refused(self, agent: str) -> str | None:
        """Why a child run of `agent` may not start under this run (None: it may): it would be deeper than this run's
        or an ancestor's limits.max_depth allows, or its agent is already running above it (a cycle)."""
        depth = self.depth + 1
        for node in (self, *self.ancestors()):
            if depth - node.depth > node.max_depth:
                return (
                    f"a run of {agent!r} here would be {depth - node.depth} levels under the run of {node.agent!r}, "
                    f"over that agent's limits.max_depth of {node.max_depth}"
                )
            if node.agent == agent:
                return f"{agent!r} is already running above this call (a cycle of sub-agents)"
        return None

    def add_usage(self, usage: TokenUsage) -> None:
        """A model call of this run: counted in its usage with descendants and every ancestor's."""
        node: RunNode | None = self
        while node is not None:
            node.usage_with_descendants = node.usage_with_descendants + usage
            node = node.parent

    def add_child_cost(self, cost: Cost | None) -> None:
        """A child finished costing `cost` (its descendants included)."""
        if cost is None:
            return
        if self.children_cost is None:
            self.children_cost = cost
        else:
            self.children_cost = Cost(
                self.children_cost.amount + cost.amount,
                self.children_cost.currency_code,
                self.children_cost.price_table_version,
            )

    def cost_with_descendants(self, own: Cost | None) -> Cost | None:
        """Own cost plus the children's (None when neither is known)."""
        if self.children_cost is None:
            return own
        if own is None:
            return self.children_cost
        return Cost(own.amount + self.children_cost.amount, own.currency_code, own.price_table_version)

    def budget_exceeded(self, own_budget: int) -> BudgetExceeded | None:
        """The first token budget that the tree under it went over (None: none): this run's (`own_budget`, its agent's
        limits.token_budget; 0: none), else an ancestor's."""
        for node in (self, *self.ancestors()):
            budget = own_budget if node is self else node.token_budget
            used = node.usage_with_descendants.total_tokens
            if budget and used > budget:
                return BudgetExceeded(
                    used, budget, node.run_id, node.agent, own=node is self, with_descendants=node.children > 0
                )
        return None
