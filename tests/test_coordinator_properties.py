"""Property tests of the coordinator's plan: random contexts on random nodes and tiers,
random page classes, goals and measurements."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from damond.config import GiB, MiB
from damond.config.context import step_floor_bp
from damond.control.conflicts import Move, conflicts
from damond.control.coordinator import Coordinator
from damond.control.goalmetric import bytes_per_bp, goal_value_bp
from damond.control.pageclass import PageClass
from damond.control.plan import GoalKey, Member, plan

STEP = 64 * MiB
CLASSES = (
    PageClass(0.5, 1.0, 3.0, 2.0**32),  # hot
    PageClass(0.2, 0.7, 1.0, 2.0**32),  # warm: overlaps hot
    PageClass(0.0, 0.05, 5.0, 2.0**32),  # cold: overlaps neither
)
METRICS = ("node_target_mem_bp", "node_eligible_mem_bp")


@st.composite
def machines(draw: st.DrawFn) -> list[Member]:
    n_nodes = draw(st.integers(2, 4))
    nodes = list(range(n_nodes))
    capacity = {n: draw(st.integers(4, 64)) * GiB for n in nodes}
    eligible = {
        c: {n: draw(st.integers(0, capacity[n] // STEP)) * STEP // len(CLASSES) for n in nodes}
        for c in range(len(CLASSES))
    }
    members = []
    for i in range(draw(st.integers(1, 7))):
        source, dest = draw(st.permutations(nodes))[:2]
        raises = draw(st.booleans())
        c = draw(st.integers(0, len(CLASSES) - 1))
        goal = GoalKey(draw(st.sampled_from(METRICS)), dest if raises else source, CLASSES[c])
        per_bp = bytes_per_bp(goal.metric, goal.nid, eligible[c], capacity)
        members.append(
            Member(
                name=f"c{i}",
                source=source,
                dest=dest,
                goal=goal,
                raises=raises,
                target_bp=draw(st.integers(0, 10_000)),
                deadband_bp=max(draw(st.integers(0, 200)), step_floor_bp(STEP, per_bp)),
                eligible_bytes=eligible[c],
                capacity_bytes=capacity,
                inflight_bytes=draw(st.sampled_from([0, 0, STEP, 8 * STEP])),
            )
        )
    return members


def moving(members: list[Member]) -> list[tuple[Member, int]]:
    shares = plan(members).shares
    return [(m, shares[m.name].demand_bytes) for m in members if shares[m.name].demand_bytes > 0]


@settings(max_examples=300, deadline=None)
@given(machines())
def test_no_two_contexts_move_common_pages_in_opposite_directions(members: list[Member]) -> None:
    acting = [m for m, _ in moving(members)]
    for a in acting:
        for b in acting:
            if (a.source, a.dest) == (b.dest, b.source):
                assert a.moved_class.overlap(b.moved_class) is None, (a.name, b.name)


@settings(max_examples=300, deadline=None)
@given(machines())
def test_the_moves_planned_for_a_goal_never_exceed_its_gap_and_one_step(
    members: list[Member],
) -> None:
    planned: dict[tuple[GoalKey, bool], int] = {}
    for m, demand in moving(members):
        planned[(m.goal, m.raises)] = planned.get((m.goal, m.raises), 0) + demand
    for (goal, raises), total in planned.items():
        group = sorted((m for m in members if m.goal == goal), key=lambda m: m.name)
        seen = group[0].eligible_bytes  # the goal as its first context reads it
        value = goal_value_bp(goal.metric, goal.nid, seen, group[0].capacity_bytes)
        per_bp = bytes_per_bp(goal.metric, goal.nid, seen, group[0].capacity_bytes)
        widest = max((m.target_bp - value) * (1 if raises else -1) for m in group)
        assert total <= widest * per_bp + STEP


@settings(max_examples=300, deadline=None)
@given(machines())
def test_nobody_moves_or_is_held_when_every_goal_is_met(members: list[Member]) -> None:
    met = []
    for m in members:
        value = goal_value_bp(m.goal.metric, m.goal.nid, m.eligible_bytes, m.capacity_bytes)
        met.append(replace(m, target_bp=value, inflight_bytes=0))
    for share in plan(met).shares.values():
        assert share.demand_bytes == 0 and share.held_reason is None


@settings(max_examples=300, deadline=None)
@given(machines())
def test_contexts_of_classes_without_common_pages_are_never_held_as_a_conflict(
    members: list[Member],
) -> None:
    distinct = [
        replace(m, goal=replace(m.goal, page_class=PageClass(i, i, i, i)))
        for i, m in enumerate(members)
    ]
    for share in plan(distinct).shares.values():
        assert share.held_reason in (None, "unreachable")


@settings(max_examples=300, deadline=None)
@given(machines())
def test_a_shared_goal_with_a_band_between_raisers_and_lowerers_is_never_infeasible(
    members: list[Member],
) -> None:
    """Raisers aim at or below the lowerers' targets: some value meets them all."""
    banded = [replace(m, target_bp=4000 if m.raises else 6000) for m in members]
    assert all(s.held_reason != "infeasible" for s in plan(banded).shares.values())


@settings(max_examples=100, deadline=None)
@given(machines())
def test_the_coordinator_gives_each_context_its_part_of_the_whole_plan(
    members: list[Member],
) -> None:
    c = Coordinator(1.0)
    for m in members:  # a first tick: each learns of the others
        c.decide(m)
    expected = plan(members).shares
    for m in members:
        assert c.decide(replace(m, time_s=1.0)) == expected[m.name]


def common(classes: list[PageClass]) -> bool:
    both: PageClass | None = classes[0]
    for c in classes[1:]:
        both = both.overlap(c) if both is not None else None
    return both is not None


def on_a_cycle(move: Move, moves: list[Move]) -> bool:
    """Brute force: some chain of distinct moves leads from ``move``'s destination back
    to its source, with pages in every class along it."""

    def extend(path: list[Move]) -> bool:
        if path[-1].dest == move.source and len(path) > 1:
            return common([m.page_class for m in path])
        return any(extend([*path, m]) for m in moves if m not in path and m.source == path[-1].dest)

    return extend([move])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.permutations(range(4)).map(lambda p: p[:2]), st.integers(0, len(CLASSES) - 1)),
        max_size=6,
    )
)
def test_conflicts_are_exactly_the_moves_on_a_cycle_of_common_pages(
    drawn: list[tuple[tuple[int, ...], int]],
) -> None:
    moves = [Move(f"m{i}", s, d, CLASSES[c]) for i, ((s, d), c) in enumerate(drawn)]
    held = {name for group in conflicts(moves) for name in group}
    assert held == {m.name for m in moves if on_a_cycle(m, moves)}
