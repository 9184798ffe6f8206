"""True conflicts: contexts that would carry the same pages around a cycle of nodes.

A set of moves conflicts when some pages belong to every move's class and the
moves lead from node to node back to where they started: whatever one of them
moves, another moves back (two contexts trading pages between two nodes, or
three pushing them round three). Moves of classes with nothing in common never
conflict, whatever their nodes: a hot-page promoter CXL -> DRAM and a cold-page
demoter DRAM -> CXL work side by side, and so do moves whose filters keep them to
different cgroups' pages.

If pages in every class of a cycle exist, some lie at the corner of the classes'
common range (the largest lower bounds), in some cgroup (one a filter names, or any
other), so trying each such corner finds every
cycle: at a corner, keep the moves whose class holds it, and a move is on a cycle
when its destination leads back to its source.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from damond.control.pageclass import PageClass


@dataclass(frozen=True, slots=True)
class Move:
    """A context that wants to move pages of ``page_class`` from ``source`` to ``dest``."""

    name: str
    source: int
    dest: int
    page_class: PageClass
    cgroups: frozenset[str] | None = None
    """The only cgroups whose pages it moves (None: any)."""

    def moves_cgroup(self, cgroup: str | None) -> bool:
        """Whether it moves pages of ``cgroup`` (None: a cgroup no filter names)."""
        return self.cgroups is None or cgroup in self.cgroups


def _components(moves: Iterable[Move]) -> dict[int, int]:
    """Each node's strongly connected component under ``moves`` (Kosaraju's two passes,
    iterative): a move is on a cycle when both its nodes share a component."""
    forward: dict[int, list[int]] = {}
    backward: dict[int, list[int]] = {}
    for m in moves:
        forward.setdefault(m.source, []).append(m.dest)
        backward.setdefault(m.dest, []).append(m.source)
    nodes = set(forward) | set(backward)
    order: list[int] = []
    visited: set[int] = set()
    for start in nodes:
        if start in visited:
            continue
        visited.add(start)
        stack = [(start, iter(forward.get(start, ())))]
        while stack:
            node, edges = stack[-1]
            nxt = next((n for n in edges if n not in visited), None)
            if nxt is None:
                stack.pop()
                order.append(node)
            else:
                visited.add(nxt)
                stack.append((nxt, iter(forward.get(nxt, ()))))
    component: dict[int, int] = {}
    for root in reversed(order):
        if root in component:
            continue
        component[root] = root
        todo = [root]
        while todo:
            for prev in backward.get(todo.pop(), ()):
                if prev not in component:
                    component[prev] = root
                    todo.append(prev)
    return component


def conflicts(moves: Sequence[Move]) -> list[frozenset[str]]:
    """The groups of moves that carry common pages around a cycle, each group named
    once (groups sharing a move are one group)."""
    groups: list[set[str]] = []
    freqs = sorted({m.page_class.freq_min for m in moves})
    ages = sorted({m.page_class.age_min_s for m in moves})
    named = sorted({c for m in moves for c in m.cgroups or ()})
    corners = [(f, a, c) for f in freqs for a in ages for c in (None, *named)]
    for freq, age, cgroup in corners:
        here = [m for m in moves if m.page_class.holds(freq, age) and m.moves_cgroup(cgroup)]
        if len(here) < 2:
            continue
        component = _components(here)
        by_component: dict[int, set[str]] = {}
        for m in here:
            if component[m.source] == component[m.dest]:
                by_component.setdefault(component[m.source], set()).add(m.name)
        groups.extend(by_component.values())
    return _merged(groups)


def _merged(groups: list[set[str]]) -> list[frozenset[str]]:
    merged: list[set[str]] = []
    for group in groups:
        touching = [g for g in merged if g & group]
        for g in touching:
            merged.remove(g)
            group = group | g
        merged.append(set(group))
    return sorted((frozenset(g) for g in merged), key=sorted)
