from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from damond.control.tuners import (
    GOAL_SCORE,
    MIN_INPUT,
    ULONG_MAX,
    consist_next,
    goal_score,
    next_effective_quota,
    temporal_next,
)
from damond.model.damon import GoalTuner


def test_consist_starts_at_one_byte_and_doubles_while_nothing_is_achieved() -> None:
    esz_bp = 0
    sizes = []
    for _ in range(5):
        esz_bp, esz = next_effective_quota(GoalTuner.CONSIST, esz_bp, 0, 0)
        sizes.append(esz)
    assert sizes == [2, 4, 8, 16, 32]


def test_consist_collapses_to_one_byte_at_twice_the_goal() -> None:
    assert consist_next(10**12, 2 * GOAL_SCORE) == MIN_INPUT
    assert consist_next(10**12, 5 * GOAL_SCORE) == MIN_INPUT


def test_consist_holds_at_the_goal() -> None:
    assert consist_next(123_456_789, GOAL_SCORE) == 123_456_789


@given(st.integers(min_value=0, max_value=2**60), st.integers(min_value=0, max_value=GOAL_SCORE))
def test_consist_grows_at_most_twofold_below_goal(last: int, score: int) -> None:
    nxt = consist_next(last, score)
    base = max(last, MIN_INPUT)
    assert base <= nxt <= 2 * base


@given(
    st.integers(min_value=0, max_value=2**60),
    st.integers(min_value=GOAL_SCORE + 1, max_value=2 * GOAL_SCORE - 1),
)
def test_consist_shrinks_in_proportion_above_goal(last: int, score: int) -> None:
    nxt = consist_next(last, score)
    base = max(last, MIN_INPUT)
    expected = max(MIN_INPUT, base - base * (score - GOAL_SCORE) // GOAL_SCORE)
    assert nxt == expected


def test_consist_is_capped_by_the_size_quota() -> None:
    _, esz = next_effective_quota(GoalTuner.CONSIST, 10**15, 0, 1 << 20)
    assert esz == 1 << 20


def test_temporal_is_full_below_goal_and_zero_once_met() -> None:
    assert temporal_next(GOAL_SCORE - 1, 1 << 29) == 1 << 29
    assert temporal_next(GOAL_SCORE, 1 << 29) == 0
    assert temporal_next(3 * GOAL_SCORE, 1 << 29) == 0
    assert temporal_next(0, 0) == ULONG_MAX


def test_goal_score_ignores_zero_targets() -> None:
    assert goal_score(5000, 0) == GOAL_SCORE
    assert goal_score(3000, 6000) == 5000
