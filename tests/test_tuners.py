from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from damond.config import ContextConfig, ControllerConfig, GiB, GoalConfig, Mode, SchemeConfig
from damond.control.coordinator import Coordinator
from damond.control.tick import ContextControl
from damond.control.translation import build_context
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
from damond.model.measurement import SchemeStats, Snapshot


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


def kernel_context(
    name: str, node: int, dest: int, target: int, **controller: object
) -> ContextConfig:
    return ContextConfig(
        name=name,
        node=node,
        mode=Mode.KERNEL,
        scheme=SchemeConfig(target_nid=dest),
        goal=GoalConfig(metric="node_eligible_mem_bp", nid=0, target_bp=target),
        controller=ControllerConfig.model_validate(controller),
    )


def fed(cfg: ContextConfig, on_0: int, on_1: int) -> tuple[int, int]:
    snap = Snapshot(
        time_s=0.0,
        eligible_bytes={0: on_0, 1: on_1},
        capacity_bytes={0: 20 * GiB, 1: 40 * GiB},
        stats=SchemeStats(),
        quota_bytes=0,
        effective_quota_bytes=0,
        running=True,
    )
    tick = ContextControl(cfg, 1.0).tick(snap, Coordinator(1.0))
    assert tick.write_goal is not None
    return tick.write_goal


def rests(current: int, target: int) -> bool:
    score = goal_score(current, target)
    return consist_next(10**15, score) == MIN_INPUT and temporal_next(score, 1 << 29) == 0


def test_a_goal_that_cannot_be_missed_rests_the_kernel_tuner() -> None:
    """Problem 4: 10000 on a lowering context was fed as target 1, current 0 (a score of
    0: full power) while the metric read a perfect 10000."""
    assert rests(*fed(kernel_context("push", 0, 1, 10_000), 10 * GiB, 0))
    assert rests(*fed(kernel_context("pull", 1, 0, 0), 0, 10 * GiB))


def test_a_met_goal_rests_the_kernel_tuner_and_an_unmet_one_drives_it() -> None:
    pull = kernel_context("pull", 1, 0, 6000, deadband_bp=50)
    assert rests(*fed(pull, 6 * GiB, 4 * GiB))  # 6000 bp: met
    assert rests(*fed(pull, 7 * GiB, 3 * GiB))  # past it
    assert fed(pull, 5 * GiB, 5 * GiB) == (5000, 6000)  # short of it: the metric as is
    push = kernel_context("push", 0, 1, 6000, deadband_bp=50)
    assert fed(push, 7 * GiB, 3 * GiB) == (3000, 4000)  # turned around, as before
    literal = kernel_context("push", 0, 1, 10_000, kernel_feed="literal")
    assert fed(literal, 10 * GiB, 0) == (10_000, 10_000)  # the seed RFC's feed, kept


def test_a_goal_that_cannot_be_missed_rests_the_tuner_from_the_start() -> None:
    """Before anything is measured (no eligible memory yet), a kdamond started with a
    current value of 0 ran the tuner at full power for the first seconds."""
    push = kernel_context("push", 0, 1, 10_000)
    (goal,) = build_context(push).schemes[0].quota.goals
    assert rests(goal.current_value, goal.target_value)
    assert rests(*fed(push, 0, 0))
    unmet = kernel_context("push", 0, 1, 6000)
    (goal,) = build_context(unmet).schemes[0].quota.goals
    assert goal.current_value == 0  # the backend's own start value
