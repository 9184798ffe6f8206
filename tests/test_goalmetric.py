from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from damond.config.context import step_floor_bp
from damond.control.goalmetric import (
    bytes_per_bp,
    goal_value_bp,
    node_eligible_mem_bp,
    node_target_mem_bp,
)
from damond.model.units import BP_SCALE

sizes = st.integers(min_value=0, max_value=2**50)
nodes = st.dictionaries(st.integers(min_value=0, max_value=7), sizes, min_size=1, max_size=8)


@given(sizes, sizes)
def test_node_target_is_bounded_basis_points(eligible: int, capacity: int) -> None:
    value = node_target_mem_bp(eligible, capacity)
    assert 0 <= value <= BP_SCALE
    if capacity > 0 and eligible <= capacity:
        assert value == eligible * BP_SCALE // capacity


@given(sizes)
def test_node_target_of_empty_or_missing_node_is_zero(n: int) -> None:
    assert node_target_mem_bp(0, n) == 0
    assert node_target_mem_bp(n, 0) == 0


@given(nodes)
def test_node_eligible_shares_add_up_to_the_whole(eligible: dict[int, int]) -> None:
    shares = [node_eligible_mem_bp(eligible, nid) for nid in eligible]
    assert all(0 <= s <= BP_SCALE for s in shares)
    if sum(eligible.values()) == 0:
        assert shares == [0] * len(shares)
    else:
        # each share is floored, so the sum misses at most one bp per node
        assert BP_SCALE - len(eligible) < sum(shares) <= BP_SCALE


@given(nodes, st.integers(min_value=0, max_value=7))
def test_node_eligible_of_unknown_node_is_zero_unless_present(
    eligible: dict[int, int], nid: int
) -> None:
    if nid not in eligible:
        assert node_eligible_mem_bp(eligible, nid) == 0


def test_node_eligible_of_the_only_node_is_everything() -> None:
    assert node_eligible_mem_bp({0: 5, 1: 0}, 0) == BP_SCALE


@given(
    st.integers(min_value=1 << 30, max_value=1 << 40),
    st.integers(min_value=1 << 30, max_value=1 << 40),
    st.integers(min_value=0, max_value=1000),
)
def test_moving_bytes_per_bp_changes_the_share_by_one_bp_each(
    on_a: int, on_b: int, steps: int
) -> None:
    eligible = {0: on_a, 1: on_b}
    per_bp = bytes_per_bp("node_eligible_mem_bp", 0, eligible, {})
    moved = min(on_b, int(per_bp * steps))
    after = {0: on_a + moved, 1: on_b - moved}
    before_bp = goal_value_bp("node_eligible_mem_bp", 0, eligible, {})
    after_bp = goal_value_bp("node_eligible_mem_bp", 0, after, {})
    assert abs((after_bp - before_bp) - moved / per_bp) <= 1


def test_capacity_metric_bytes_per_bp_is_capacity_over_10000() -> None:
    assert bytes_per_bp("node_target_mem_bp", 1, {}, {1: 10_000 * 4096}) == 4096


@given(
    st.integers(min_value=1 << 20, max_value=1 << 30),
    st.integers(min_value=1 << 30, max_value=1 << 40),
    st.integers(min_value=0, max_value=1 << 40),
)
def test_the_dead_band_floor_covers_one_measurement_step(
    step: int, capacity: int, eligible: int
) -> None:
    """A step moves the metric by no more than the floor, so a band of the floor's half
    width around any target holds a value whole steps reach."""
    eligible = min(eligible, capacity - step)
    per_bp = bytes_per_bp("node_target_mem_bp", 0, {}, {0: capacity})
    floor = step_floor_bp(step, per_bp)
    before = goal_value_bp("node_target_mem_bp", 0, {0: eligible}, {0: capacity})
    after = goal_value_bp("node_target_mem_bp", 0, {0: eligible + step}, {0: capacity})
    assert 0 <= after - before <= floor
    assert floor - 1 < step / per_bp <= floor


def test_the_dead_band_floor_of_nothing_is_zero() -> None:
    assert step_floor_bp(0, 4096.0) == 0
    assert step_floor_bp(64 << 20, 0.0) == 0
    assert step_floor_bp(1 << 40, 1.0) == BP_SCALE
