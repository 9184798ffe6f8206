"""Memory tiers: which node is faster, so that a move is a promotion or a demotion.

Tier 0 is the fastest (DRAM); a larger tier is slower (CXL, far CXL). A chain
DRAM -> CXL -> far CXL is three tiers. Tiers come from the simulated machine's
configuration or, on a real host, from the kernel's memory tiers; a node of no
known tier is named by its id alone.
"""

from __future__ import annotations

from collections.abc import Mapping

from damond.config import SimulationConfig


class Tiers:
    """The tier of each node, and the words logs and checks use for nodes and moves."""

    def __init__(self, tier_by_node: Mapping[int, int] | None = None) -> None:
        self.tier_by_node = dict(tier_by_node or {})

    @classmethod
    def of_simulation(cls, sim: SimulationConfig) -> Tiers:
        """A node's configured tier, else its rank by node id (node 0 is DRAM)."""
        ranked = {n.id: rank for rank, n in enumerate(sorted(sim.nodes, key=lambda n: n.id))}
        return cls({n.id: ranked[n.id] if n.tier is None else n.tier for n in sim.nodes})

    def tier(self, nid: int) -> int | None:
        return self.tier_by_node.get(nid)

    def node(self, nid: int) -> str:
        """``node 1 (tier 1)``, or ``node 1`` if its tier is unknown."""
        tier = self.tier(nid)
        return f"node {nid}" if tier is None else f"node {nid} (tier {tier})"

    def move(self, source: int, dest: int) -> str:
        """What a move from ``source`` to ``dest`` is: a promotion (to a faster tier), a
        demotion (to a slower one), or a move within one tier."""
        a, b = self.tier(source), self.tier(dest)
        if a is None or b is None:
            return "move"
        if b < a:
            return "promotion"
        if b > a:
            return "demotion"
        return f"move within tier {a}"

    def route(self, source: int, dest: int) -> str:
        """``node 1 (tier 1) -> node 0 (tier 0), a promotion``; a ``dest`` of -1 (an lru
        action) moves pages between the LRU lists of ``source``."""
        if dest < 0:
            return f"{self.node(source)}, between its LRU lists"
        return f"{self.node(source)} -> {self.node(dest)}, a {self.move(source, dest)}"
