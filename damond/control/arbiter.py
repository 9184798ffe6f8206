"""Detects context goals that cannot be met together, so nobody ping-pongs.

Two contexts whose schemes move pages in opposite directions between the same
two nodes, and that both want to act at the same time, are fighting over the
same pages: each move that helps one goal undoes the other's (for example
capacity-based targets that need more hot memory than exists). The arbiter
then holds both still and says so once, with the numbers, until the conflict
clears.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog


@dataclass(frozen=True, slots=True)
class Claim:
    """What a context wants this iteration."""

    name: str
    source: int
    dest: int
    goal_node: int
    metric: str
    metric_bp: int
    target_bp: int
    demand_bytes: int
    time_s: float


class GoalArbiter:
    """Shared by all context loops of one daemon (or one simulation)."""

    def __init__(self, stale_after_s: float) -> None:
        self.stale_after_s = stale_after_s
        self._claims: dict[str, Claim] = {}
        self._by_route: dict[tuple[int, int], dict[str, Claim]] = {}
        """Claims by (source, dest): an opposed claim is found without scanning them all."""
        self._conflicts: set[frozenset[str]] = set()
        self._log = structlog.get_logger("damond.control.arbiter")

    def forget(self, name: str) -> None:
        self._drop_claim(name)
        self._conflicts = {pair for pair in self._conflicts if name not in pair}

    def _drop_claim(self, name: str) -> None:
        """Drop ``name``'s last claim (its route may change with its configuration)."""
        old = self._claims.pop(name, None)
        if old is not None:
            self._by_route[(old.source, old.dest)].pop(name, None)

    def in_conflict(self, name: str) -> bool:
        return any(name in pair for pair in self._conflicts)

    def may_act(self, claim: Claim) -> bool:
        """Record ``claim``; False if acting would fight another context."""
        self._drop_claim(claim.name)
        self._claims[claim.name] = claim
        self._by_route.setdefault((claim.source, claim.dest), {})[claim.name] = claim
        blocked = False
        for other in list(self._by_route.get((claim.dest, claim.source), {}).values()):
            pair = frozenset((claim.name, other.name))
            fresh = claim.time_s - other.time_s <= self.stale_after_s
            fighting = fresh and claim.demand_bytes > 0 and other.demand_bytes > 0
            if fighting:
                blocked = True
                if pair not in self._conflicts:
                    self._conflicts.add(pair)
                    self._warn(claim, other)
            elif pair in self._conflicts:
                self._conflicts.discard(pair)
                self._log.info("context goals no longer conflict", contexts=sorted(pair))
        return not blocked

    def _warn(self, a: Claim, b: Claim) -> None:
        def side(c: Claim) -> str:
            return (
                f"{c.name} wants {c.metric} of node {c.goal_node} at {c.target_bp} bp "
                f"(now {c.metric_bp} bp) and would move {c.demand_bytes} bytes "
                f"from node {c.source} to node {c.dest}"
            )

        self._log.warning(
            "context goals cannot be met together; holding both still instead of "
            f"moving the same pages back and forth: {side(a)}; {side(b)}",
            contexts=sorted((a.name, b.name)),
        )
