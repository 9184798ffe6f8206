from __future__ import annotations

import itertools

from damond.config import ContextConfig, ControllerConfig, GiB, GoalConfig, MiB, SchemeConfig
from damond.control.controller import STEP_FLOOR_BYTES, DaemonController, default_lag_s
from damond.model import damon as model

CAP = {0: 20 * GiB, 1: 40 * GiB}


def push_out(target: int = 6000, **controller: object) -> ContextConfig:
    """Node 0's hot pages go to node 1; the goal measures node 0 (lowers it)."""
    return ContextConfig(
        name="push",
        node=0,
        scheme=SchemeConfig(target_nid=1),
        goal=GoalConfig(nid=0, target_bp=target),
        controller=ControllerConfig.model_validate(controller),
    )


def pull_in(target: int = 6000) -> ContextConfig:
    """Node 1's hot pages come to node 0; the goal measures node 0 (raises it)."""
    return ContextConfig(
        name="pull",
        node=1,
        scheme=SchemeConfig(target_nid=0),
        goal=GoalConfig(metric="node_eligible_mem_bp", nid=0, target_bp=target),
    )


def test_direction_follows_the_goal_node() -> None:
    assert push_out().direction is model.Direction.LOWERS
    assert pull_in().direction is model.Direction.RAISES


def test_a_lowering_scheme_acts_only_above_target() -> None:
    c = DaemonController(push_out(), 1.0)
    above = c.decide({0: 14 * GiB, 1: 14 * GiB}, CAP)  # 7000 bp
    assert above.metric_bp == 7000
    assert above.demand_bytes == 2 * GiB
    assert above.quota_bytes == STEP_FLOOR_BYTES  # first step from idle is bounded
    below = DaemonController(push_out(), 1.0).decide({0: 10 * GiB, 1: 14 * GiB}, CAP)
    assert below.demand_bytes == 0
    assert below.quota_bytes == model.IDLE_QUOTA_BYTES


def test_no_action_inside_the_dead_band() -> None:
    c = DaemonController(push_out(deadband_bp=50), 1.0)
    # 6040 bp: 40 bp above target, inside the 50 bp band
    assert c.decide({0: int(20 * GiB * 0.604), 1: 0}, CAP).quota_bytes == model.IDLE_QUOTA_BYTES


def test_quota_ramps_at_most_twofold_and_stops_at_the_cap() -> None:
    c = DaemonController(push_out(), 1.0)
    quotas = [c.decide({0: 18 * GiB, 1: 0}, CAP).quota_bytes for _ in range(8)]
    assert quotas[:5] == [STEP_FLOOR_BYTES * 2**k for k in range(5)]
    assert quotas[-1] == 512 * MiB  # scheme.quota.max_bytes
    assert all(b <= 2 * a for a, b in itertools.pairwise(quotas))


def test_quota_is_a_gain_fraction_of_a_small_gap() -> None:
    c = DaemonController(push_out(), 1.0)
    gap = 20 * GiB // 100  # 100 bp above target
    d = c.decide({0: 12 * GiB + gap, 1: 0}, CAP)
    assert abs(d.demand_bytes - gap) <= 20 * GiB // 10_000
    assert d.quota_bytes == min(STEP_FLOOR_BYTES, d.demand_bytes // 2)


def test_in_flight_migrations_count_at_the_destination_until_the_lag_passes() -> None:
    ctx = pull_in()
    c = DaemonController(ctx, 1.0)
    eligible = {0: 4 * GiB, 1: 6 * GiB}  # node 0 holds 40 % of the hot memory
    c.note_applied(0.0, 0)
    first = c.decide(eligible, CAP)
    assert first.demand_bytes == 2 * GiB
    # 1 GiB moved; DAMON still sees it as cold on node 0
    c.note_applied(1.0, 1 * GiB)
    moved = {0: 4 * GiB, 1: 5 * GiB}
    second = c.decide(moved, CAP)
    assert second.inflight_bytes == 1 * GiB
    assert second.predicted_bp == 5000
    assert second.demand_bytes == 1 * GiB
    # once the lag has passed the bytes are no longer in flight
    c.note_applied(1.0 + default_lag_s(ctx) + 0.1, 1 * GiB)
    assert c.inflight_bytes == 0


def test_disabled_context_is_idle() -> None:
    ctx = push_out().model_copy(update={"enabled": False})
    d = DaemonController(ctx, 1.0).decide({0: 18 * GiB, 1: 0}, CAP)
    assert d.quota_bytes == model.IDLE_QUOTA_BYTES


def test_default_lag_covers_resampling_and_minimum_age() -> None:
    ctx = push_out()
    assert default_lag_s(ctx) == (ctx.scheme.access_pattern.age_min + 2) * 1.0
    assert default_lag_s(push_out(lag_s=7.5)) == 7.5
