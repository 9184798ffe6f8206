"""The coordinator's holds: true conflicts (cycles of contexts moving the same pages),
infeasible shared goals, unreachable goals, and saying each once per episode."""

from __future__ import annotations

from structlog.testing import capture_logs

from damond.config import AccessPatternConfig, ContextConfig, GiB, GoalConfig, SchemeConfig
from damond.control.coordinator import EPISODE_QUIET_S, Coordinator
from damond.control.plan import Member, Share
from damond.control.tiers import Tiers

HOT = AccessPatternConfig()
COLD = AccessPatternConfig(nr_accesses_min=0, nr_accesses_max=1, age_min=5)
CAP = {0: 20 * GiB, 1: 40 * GiB, 2: 40 * GiB}


def ctx(
    name: str,
    src: int,
    dst: int,
    goal_nid: int,
    target: int,
    pattern: AccessPatternConfig = HOT,
    metric: str = "node_target_mem_bp",
) -> ContextConfig:
    return ContextConfig(
        name=name,
        node=src,
        scheme=SchemeConfig(target_nid=dst, access_pattern=pattern),
        goal=GoalConfig(metric=metric, nid=goal_nid, target_bp=target),
    )


def member(
    cfg: ContextConfig, eligible: dict[int, int], t: float = 0.0, inflight: int = 0
) -> Member:
    return Member.of(
        cfg,
        deadband_bp=20,
        eligible_bytes=eligible,
        capacity_bytes=CAP,
        inflight_bytes=inflight,
        time_s=t,
    )


def decide_all(c: Coordinator, members: list[Member]) -> dict[str, Share]:
    return {m.name: c.decide(m) for m in members}


def test_a_hot_promoter_and_a_cold_demoter_between_the_same_nodes_both_act() -> None:
    """Problem 1: opposite routes, but no page is in both classes."""
    promote = ctx("promote", 1, 0, 0, 8500)
    evict = ctx("evict", 0, 1, 0, 500, COLD)
    c = Coordinator(1.0)
    with capture_logs() as logs:
        shares = decide_all(
            c,
            [
                member(promote, {0: 4 * GiB, 1: 20 * GiB}),
                member(evict, {0: 10 * GiB, 1: 2 * GiB}),
            ],
        )
    assert shares["promote"].held_reason is None and shares["promote"].demand_bytes > 0
    assert shares["evict"].held_reason is None and shares["evict"].demand_bytes > 0
    assert not [e for e in logs if e["log_level"] == "warning"]


def opposed_pair() -> tuple[ContextConfig, ContextConfig]:
    """The seed's contexts: each lowers its own node by pushing hot pages to the other."""
    return ctx("a", 0, 1, 0, 6000), ctx("b", 1, 0, 1, 4000)


def test_contexts_trading_the_same_pages_are_held_with_one_warning() -> None:
    a, b = opposed_pair()
    c = Coordinator(1.0, Tiers({0: 0, 1: 1}))
    too_much = {0: 14 * GiB, 1: 18 * GiB}  # both nodes above target: 32 GiB > 12 + 16
    with capture_logs() as logs:
        c.decide(member(b, too_much, 0))  # b has reported: a knows of it at once
        for t in range(10):
            shares = decide_all(c, [member(a, too_much, t), member(b, too_much, t)])
            assert shares["a"].held_reason == shares["b"].held_reason == "conflict"
            assert shares["a"].demand_bytes == shares["b"].demand_bytes == 0
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1
    text = warnings[0]["event"]
    assert "cannot be met together" in text
    assert "a would lower node_target_mem_bp of node 0 (tier 0) to 6000 bp (now 7000 bp)" in text
    assert "node 0 (tier 0) -> node 1 (tier 1), a demotion" in text
    assert "node 1 (tier 1) -> node 0 (tier 0), a promotion" in text
    assert warnings[0]["contexts"] == ["a", "b"]
    assert warnings[0]["reason"] == "conflict"


def test_a_flapping_conflict_is_one_episode_told_once() -> None:
    """Issue 14: the warning came three times in three minutes as the conflict came and
    went at a goal's edge; it is one episode until it has been gone for a while."""
    a, b = opposed_pair()
    c = Coordinator(1.0)
    too_much = {0: 14 * GiB, 1: 18 * GiB}
    fine = {0: 12 * GiB, 1: 14 * GiB}
    with capture_logs() as logs:
        for t in range(180):
            state = too_much if (t // 20) % 2 == 0 else fine
            decide_all(c, [member(a, state, t), member(b, state, t)])
    assert len([e for e in logs if e["log_level"] == "warning"]) == 1
    assert not [e for e in logs if e["event"] == "context goals no longer conflict"]
    with capture_logs() as logs:
        quiet_end = 180 + int(EPISODE_QUIET_S) + 2
        for t in range(180, quiet_end):
            decide_all(c, [member(a, fine, t), member(b, fine, t)])
        decide_all(c, [member(a, too_much, quiet_end), member(b, too_much, quiet_end)])
    events = [e["event"] for e in logs]
    assert events.count("context goals no longer conflict") == 1
    assert len([e for e in logs if e["log_level"] == "warning"]) == 1  # a new episode


def test_a_cycle_through_three_nodes_is_a_conflict_and_a_disjoint_class_breaks_it() -> None:
    wanting = {0: 19 * GiB, 1: 39 * GiB, 2: 39 * GiB}
    ring = [ctx("a", 0, 1, 0, 1000), ctx("b", 1, 2, 1, 1000), ctx("c", 2, 0, 2, 1000)]
    c = Coordinator(1.0)
    decide_all(c, [member(m, wanting) for m in ring])
    shares = decide_all(c, [member(m, wanting, 1) for m in ring])
    assert {s.held_reason for s in shares.values()} == {"conflict"}
    ring[2] = ctx("c", 2, 0, 2, 1000, COLD)  # c moves other pages: nothing goes round
    c = Coordinator(1.0)
    decide_all(c, [member(m, wanting) for m in ring])
    shares = decide_all(c, [member(m, wanting, 1) for m in ring])
    assert {s.held_reason for s in shares.values()} == {None}


def test_a_raiser_and_a_lowerer_of_one_goal_with_no_band_between_are_infeasible() -> None:
    pull = ctx("pull", 1, 0, 0, 7000, metric="node_eligible_mem_bp")
    push = ctx("push", 0, 1, 0, 5000, metric="node_eligible_mem_bp")
    c = Coordinator(1.0)
    eligible = {0: 6 * GiB, 1: 4 * GiB}  # 6000 bp: below pull's target, above push's
    with capture_logs() as logs:
        decide_all(c, [member(pull, eligible), member(push, eligible)])
        shares = decide_all(c, [member(pull, eligible, 1), member(push, eligible, 1)])
    assert shares["pull"].held_reason == shares["push"].held_reason == "infeasible"
    assert len([e for e in logs if e["log_level"] == "warning"]) == 1


def test_a_pull_and_a_push_reading_one_goal_differently_share_one_view() -> None:
    """Problem 2 on a real kernel: each kdamond measures the shared goal of 6000 bp, the
    readings differ by 280 bp (5921 and 6200), and the two must not both act, nor be
    held as a conflict: the goal is read once, by one of them."""
    pull = ctx("pull", 1, 0, 0, 6000, metric="node_eligible_mem_bp")
    push = ctx("push", 0, 1, 0, 6000, metric="node_eligible_mem_bp")
    c = Coordinator(1.0)
    with capture_logs() as logs:
        for t in range(20):
            shares = decide_all(
                c,
                [
                    member(pull, {0: 5921, 1: 4079}, t),  # reads 5921 bp
                    member(push, {0: 6200, 1: 3800}, t),  # reads 6200 bp
                ],
            )
            assert shares["pull"].value_bp == shares["push"].value_bp == 5921
            assert shares["push"].demand_bytes == 0
            assert shares["pull"].held_reason is None and shares["push"].held_reason is None
    assert not [e for e in logs if e["log_level"] == "warning"]


def test_a_context_with_nothing_left_to_move_is_unreachable() -> None:
    pull = ctx("pull", 1, 0, 0, 9000)
    shares = decide_all(Coordinator(1.0), [member(pull, {0: 10 * GiB, 1: 0})])
    assert shares["pull"].held_reason == "unreachable"


def test_a_silent_context_neither_blocks_nor_shares() -> None:
    a, b = opposed_pair()
    c = Coordinator(1.0)
    too_much = {0: 14 * GiB, 1: 18 * GiB}
    c.decide(member(b, too_much, 0))
    assert c.decide(member(a, too_much, 10)).held_reason is None
    c.forget("a")
    assert c.decide(member(b, too_much, 10)).held_reason is None


def test_a_quota_granted_to_a_sharer_counts_as_in_flight_until_it_reports() -> None:
    """Two promoters on one goal: what one was just allowed to move, the other cannot see
    in any measurement yet, so it counts it as in flight rather than move it again."""
    one = ctx("pull-1", 1, 0, 0, 7000)
    two = ctx("pull-2", 2, 0, 0, 7000)
    eligible = {0: 10 * GiB, 1: 4 * GiB, 2: 4 * GiB}  # node 0: 5000 bp of 20 GiB
    c = Coordinator(1.0)
    c.decide(member(two, eligible))
    first = c.decide(member(one, eligible))
    assert first.gap_bytes == 4 * GiB and first.demand_bytes == 2 * GiB  # half each
    c.granted("pull-1", 1 * GiB)
    second = c.decide(member(two, eligible, 1.0))
    assert second.gap_bytes == 3 * GiB  # pull-1's gigabyte is on its way
    assert second.demand_bytes == 3 * GiB // 2
    after = c.decide(member(one, eligible, 1.0, inflight=512 << 20))
    assert after.gap_bytes == 4 * GiB - (512 << 20)  # its report replaces its grant
