"""One tick's plan over every context: who moves how many bytes towards which goal.

A goal is a metric of a node over a class of pages (or, for the metrics of the
machine's memory, of a node and a cgroup, whatever the pages' class; a free metric is
steered as its used one turned around): contexts whose goals have the same key steer
one quantity and share it:

- **one view**: the goal's value is read once, from one of its contexts (the first
  by name), so that two kdamonds measuring it a few hundred basis points apart
  never pull it two ways, with the pages that contexts of other goals moved between
  other nodes counted where they went until they can be seen there (a share read
  while they are in flight, seen nowhere, is one no placement holds);
- **bytes in flight per goal**: what the contexts moving it one way moved recently
  counts, for all of them, at its destination, where the measurement does not see
  it yet (migrated pages look cold until they have aged again), and what they moved
  after the one reading was taken, or were given and have not moved yet, also
  leaves its source (the reading still sees it there: counting it at both ends
  would understate the value and overshoot); the contexts moving it the other way
  wait for it to be measured;
- **one gap, split**: the contexts that raise it (or lower it) split the bytes the
  gap needs in proportion to the memory each has to move, instead of each moving
  the whole gap;
- **holds**, each with a reason (:data:`HELD_REASONS`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from damond.config import ContextConfig
from damond.control import workload
from damond.control.conflicts import Move, conflicts
from damond.control.goalmetric import bytes_per_bp, goal_value_bp
from damond.control.pageclass import ANY_PAGES, PageClass
from damond.model import damon as model
from damond.model.filtering import cgroups_acted_on

HELD_CONFLICT = "conflict"
HELD_INFEASIBLE = "infeasible"
HELD_UNREACHABLE = "unreachable"
HELD_UNMEASURED = "unmeasured"
HELD_REASONS = {
    HELD_CONFLICT: "it and other contexts of other goals would move the same pages back "
    "and forth around a cycle of nodes",
    HELD_INFEASIBLE: "a context raising its goal and one lowering it want values that no "
    "single value meets (their targets and dead bands leave no band between them)",
    HELD_UNREACHABLE: "its goal needs moves but its node has no memory of its class left",
    HELD_UNMEASURED: "the memory readings its goal's metric is computed from are missing",
}
"""The ``held_reason`` values and what each means."""


@dataclass(frozen=True, slots=True)
class GoalKey:
    """A goal as a quantity: contexts with equal keys steer the same value."""

    metric: str
    nid: int
    page_class: PageClass | None
    """None for a metric of the machine's memory, which pages of any class move."""
    path: str = ""


@dataclass(frozen=True, slots=True)
class Member:
    """What one context tells the plan: its route, its goal, and its measurement."""

    name: str
    source: int
    dest: int
    goal: GoalKey
    raises: bool
    target_bp: int
    deadband_bp: int
    """The dead band in force (never narrower than one measurement step)."""
    eligible_bytes: Mapping[int, int]
    """Memory of its class on each node, as this context measured it."""
    capacity_bytes: Mapping[int, int]
    inflight_bytes: int
    """Bytes it moved that the measurement does not see at their destination yet."""
    time_s: float = 0.0
    """When it measured (its snapshot's time)."""
    read_s: float | None = None
    """When its reading was first seen, if before ``time_s``: a reading repeated since
    (a kdamond busy migrating refreshes none) sees nothing moved after that."""
    enabled: bool = True
    moves: tuple[tuple[float, int], ...] = ()
    """The moves within ``inflight_bytes`` as ``(time_s, bytes)``, each seen in the
    snapshot of ``time_s``: a reading older than a move still sees its bytes at the
    source. Empty: all of them are older than any reading."""
    pending_bytes: int = 0
    """Quota it was given and has not used yet: bytes still at the source."""
    seen_after_s: float = 0.0
    """The least time from a move until its pages can be seen at their destination."""
    pages: PageClass | None = None
    """The class of pages it moves, when its goal is not of one class."""
    cgroups: frozenset[str] | None = None
    """The only cgroups whose pages its filters let it move (None: any)."""
    movable_bytes: int | None = None
    """What it could move, when not all of its class on its node (a cgroup's pages)."""
    reading: int | None = None
    """Its goal's value as measured, for a goal that is no node's bytes (stall)."""
    unit_bytes: float = 0.0
    """For such a goal: the bytes it estimates a move needs per unit of the goal."""

    @classmethod
    def of(
        cls,
        ctx: ContextConfig,
        *,
        deadband_bp: int,
        eligible_bytes: Mapping[int, int],
        capacity_bytes: Mapping[int, int],
        inflight_bytes: int,
        time_s: float,
        read_s: float | None = None,
        moves: tuple[tuple[float, int], ...] = (),
        seen_after_s: float = 0.0,
        tier_by_node: Mapping[int, int] | None = None,
        movable_bytes: int | None = None,
        reading: int | None = None,
        unit_bytes: float = 0.0,
    ) -> Member:
        """``eligible_bytes`` and ``capacity_bytes`` are, for a node memory metric, the
        bytes its used side counts per node and each node's total."""
        metric = model.GoalMetric(ctx.goal.metric)
        pages = PageClass.of(ctx)
        canon = workload.canonical(metric)
        memory = metric in workload.NODE_MEMORY_METRICS
        nid = ctx.goal.nid if metric.takes_nid else -1
        raises = workload.raises_value(ctx, tier_by_node)
        return cls(
            name=ctx.name,
            source=ctx.node,
            dest=workload.dest(ctx),
            goal=GoalKey(
                canon, nid, None if memory or reading is not None else pages, ctx.goal.path
            ),
            raises=bool(raises) if canon is metric else raises is False,
            target_bp=workload.canonical_bp(metric, ctx.goal.target),
            deadband_bp=deadband_bp,
            eligible_bytes=eligible_bytes,
            capacity_bytes=capacity_bytes,
            inflight_bytes=inflight_bytes,
            time_s=time_s,
            read_s=read_s if read_s is not None and read_s < time_s else None,
            enabled=ctx.enabled,
            moves=moves,
            seen_after_s=seen_after_s,
            pages=pages,
            cgroups=cgroups_acted_on([f.to_model() for f in ctx.scheme.filters]),
            movable_bytes=movable_bytes,
            reading=reading,
            unit_bytes=unit_bytes,
        )

    @property
    def moved_class(self) -> PageClass:
        """The class of pages it moves."""
        return self.pages or self.goal.page_class or ANY_PAGES

    @property
    def available_bytes(self) -> int:
        """Memory of its class on its source node: what it could move."""
        if self.movable_bytes is not None:
            return self.movable_bytes
        return self.eligible_bytes.get(self.source, 0)

    @property
    def reading_s(self) -> float:
        """When its reading was measured."""
        return self.time_s if self.read_s is None else self.read_s

    def unseen_at_source(self, reading_s: float) -> int:
        """Bytes a reading taken at ``reading_s`` still sees at the source though they
        have left or are about to: moves after the reading, and quota not used yet."""
        return self.pending_bytes + sum(b for t, b in self.moves if t > reading_s)

    def surely_unseen(self, reading_s: float) -> int:
        """Bytes a reading taken at ``reading_s`` cannot see at the destination yet: moves
        younger than ``seen_after_s``, and quota not used yet. Fewer than
        ``inflight_bytes``, which may still count pages already seen (or moved on)."""
        recent = sum(b for t, b in self.moves if t > reading_s - self.seen_after_s)
        return self.pending_bytes + recent

    @property
    def reading_bp(self) -> int:
        """Its goal's value as this context measured it."""
        if self.reading is not None:
            return self.reading
        goal = self.goal
        return goal_value_bp(goal.metric, goal.nid, self.eligible_bytes, self.capacity_bytes)


@dataclass(frozen=True, slots=True)
class Share:
    """A context's part of the plan."""

    value_bp: int
    """Its goal's value: the one view every context of the goal uses."""
    predicted_bp: int
    """The value once every sharing context's bytes in flight are seen."""
    demand_bytes: int
    """Bytes it should move towards the goal now (0: nothing)."""
    gap_bytes: int = 0
    """Bytes its goal needs in its direction, beyond the dead band (0: none)."""
    held_reason: str | None = None
    sharers: tuple[str, ...] = ()
    """The contexts splitting the gap with it, itself included, when more than one."""
    dest_seen_bytes: int | None = None
    """Memory of its class at its destination in the one view: where its moves show
    once seen (None: a goal read as one value, or no destination)."""


@dataclass(frozen=True)
class Plan:
    shares: dict[str, Share]
    conflicts: list[frozenset[str]]
    """Groups held for :data:`HELD_CONFLICT`."""
    infeasible: list[frozenset[str]]
    """Groups held for :data:`HELD_INFEASIBLE`, one per goal."""


def _by_goal(members: Iterable[Member]) -> dict[GoalKey, list[Member]]:
    groups: dict[GoalKey, list[Member]] = {}
    for m in sorted(members, key=lambda m: m.name):
        groups.setdefault(m.goal, []).append(m)
    return groups


def plan(members: Iterable[Member]) -> Plan:
    """The plan for ``members`` (each context's latest report)."""
    goals = _by_goal(members)
    values: dict[str, tuple[int, int]] = {}
    dest_seen: dict[str, int] = {}
    gap: dict[str, int] = {}
    held: dict[str, str] = {}
    infeasible: list[frozenset[str]] = []
    for key, group in goals.items():
        reader = group[0]
        capacity = reader.capacity_bytes
        # contexts of other goals that move pages of this class between other nodes
        # change only its total: counted, or a share read mid-flight looks too high
        between_others = [
            m
            for k, g in goals.items()
            if k != key and key.page_class is not None and k.page_class == key.page_class
            for m in g
            if key.nid not in (m.source, m.dest)
        ]
        if reader.reading is not None:
            _gaps_of_reading(group, reader.reading, values, gap)
        view = dict(reader.eligible_bytes)  # the one view counts them, both directions too
        for m in between_others:  # only what surely is not seen yet: a page of a
            # chain of hops must not count once per hop
            view[m.dest] = view.get(m.dest, 0) + m.surely_unseen(reader.reading_s)
            later = m.unseen_at_source(reader.reading_s)
            view[m.source] = max(0, view.get(m.source, 0) - later)
        value = reader.reading_bp
        if reader.reading is None:
            value = goal_value_bp(key.metric, key.nid, view, capacity)
        for raises in (True, False) if reader.reading is None else ():
            # a direction counts its own bytes in flight, so that it does not overshoot,
            # and waits for the other's to be measured rather than undo a prediction
            seen = dict(view)
            side = [m for m in group if m.raises is raises]
            for m in side:  # moved (or about to), not yet seen where it went
                seen[m.dest] = seen.get(m.dest, 0) + m.inflight_bytes + m.pending_bytes
                later = m.unseen_at_source(reader.reading_s)
                seen[m.source] = max(0, seen.get(m.source, 0) - later)
            predicted = goal_value_bp(key.metric, key.nid, seen, capacity)
            per_bp = bytes_per_bp(key.metric, key.nid, seen, capacity)
            for m in side:
                values[m.name] = (value, predicted)
                if m.dest >= 0:
                    dest_seen[m.name] = view.get(m.dest, 0)
                gap_bp = (m.target_bp - predicted) * (1 if raises else -1)
                if m.enabled and per_bp > 0 and gap_bp > m.deadband_bp:
                    gap[m.name] = int(gap_bp * per_bp)
        willing = [m for m in group if m.name in gap]
        if any(m.raises for m in willing) and not all(m.raises for m in willing):
            infeasible.append(frozenset(m.name for m in willing))
            held.update((m.name, HELD_INFEASIBLE) for m in willing)
    by_name = {m.name: m for group in goals.values() for m in group}
    moves = [  # an lru action (no destination) moves pages between no nodes
        Move(m.name, m.source, m.dest, m.moved_class, m.cgroups)
        for name in gap
        if name not in held and (m := by_name[name]).available_bytes > 0 and m.dest >= 0
    ]
    cycles = conflicts(moves)
    for cycle in cycles:
        held.update((name, HELD_CONFLICT) for name in cycle)
    for name in gap:
        if name not in held and by_name[name].available_bytes <= 0:
            held[name] = HELD_UNREACHABLE
    demand = _split(goals, gap, held)
    shares = {}
    for name in by_name:
        value, predicted = values[name]
        sharers = demand.get(name, (0, ()))[1]
        shares[name] = Share(
            value_bp=value,
            predicted_bp=predicted,
            demand_bytes=demand.get(name, (0, ()))[0],
            gap_bytes=gap.get(name, 0),
            held_reason=held.get(name),
            sharers=sharers if len(sharers) > 1 else (),
            dest_seen_bytes=dest_seen.get(name),
        )
    return Plan(shares, cycles, infeasible)


def _gaps_of_reading(
    group: list[Member], reading: int, values: dict[str, tuple[int, int]], gap: dict[str, int]
) -> None:
    """The gaps of a goal read as one value (stall), with no prediction: each context's
    gap beyond its dead band, in bytes by its own estimate of bytes per unit."""
    for m in group:
        values[m.name] = (reading, reading)
        gap_units = (m.target_bp - reading) * (1 if m.raises else -1)
        if m.enabled and m.unit_bytes > 0 and gap_units > m.deadband_bp:
            unseen = m.pending_bytes + sum(b for _, b in m.moves)
            gap[m.name] = max(0, int(gap_units * m.unit_bytes) - unseen)


def _split(
    goals: dict[GoalKey, list[Member]], gap: dict[str, int], held: dict[str, str]
) -> dict[str, tuple[int, tuple[str, ...]]]:
    """Each acting context's bytes: the largest gap of its goal and direction, split in
    proportion to the memory each has to move (never more than it has)."""
    out: dict[str, tuple[int, tuple[str, ...]]] = {}
    for group in goals.values():
        for raises in (True, False):
            acting = [
                m for m in group if m.raises is raises and m.name in gap and m.name not in held
            ]
            if not acting:
                continue
            available = sum(m.available_bytes for m in acting)
            allotted = min(max(gap[m.name] for m in acting), available)
            names = tuple(m.name for m in acting)
            for m in acting:
                out[m.name] = (allotted * m.available_bytes // available, names)
    return out
