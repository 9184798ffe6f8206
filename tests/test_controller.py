from __future__ import annotations

from dataclasses import replace

from damond.config import ContextConfig, ControllerConfig, GiB, GoalConfig, MiB, SchemeConfig
from damond.control.controller import DaemonController, default_lag_s
from damond.control.coordinator import Coordinator
from damond.control.plan import Member
from damond.control.tick import ContextControl, measurement_window_s
from damond.model import damon as model
from damond.model.measurement import SchemeStats, Snapshot

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


def snap(t: float, eligible: dict[int, int], applied: int = 0) -> Snapshot:
    return Snapshot(
        time_s=t,
        eligible_bytes=eligible,
        capacity_bytes=CAP,
        stats=SchemeStats(sz_applied=applied),
        quota_bytes=0,
        effective_quota_bytes=0,
        running=True,
    )


def test_a_lowering_scheme_acts_only_above_target() -> None:
    above = ContextControl(push_out(), 1.0).tick(
        snap(0, {0: 14 * GiB, 1: 14 * GiB}), Coordinator(1)
    )
    assert above.metric_bp == 7000
    assert above.quota_bytes == 512 * MiB  # the 2 GiB gap, capped by scheme.quota.max_bytes
    below = ContextControl(push_out(), 1.0).tick(
        snap(0, {0: 10 * GiB, 1: 14 * GiB}), Coordinator(1)
    )
    assert below.quota_bytes == model.IDLE_QUOTA_BYTES
    assert not below.acting


def test_no_action_inside_the_dead_band() -> None:
    control = ContextControl(push_out(deadband_bp=50), 1.0)
    # 6040 bp: 40 bp above target, inside the 50 bp band
    tick = control.tick(snap(0, {0: int(20 * GiB * 0.604), 1: 0}), Coordinator(1))
    assert tick.quota_bytes == model.IDLE_QUOTA_BYTES


def large_quota_push_out() -> ContextConfig:
    ctx = push_out()
    scheme = ctx.scheme.model_copy(
        update={"quota": ctx.scheme.quota.model_copy(update={"max_bytes": 16 * GiB})}
    )
    return ctx.model_copy(update={"scheme": scheme})


def test_the_first_step_is_sized_from_the_gap_not_ramped() -> None:
    """A big known gap is closed in one step (all of it but one measurement step), not
    over a ramp from 32 MiB doubling per iteration: with a quota far larger than the
    job, the ramp took 1.5x the physical lower bound to settle."""
    c = DaemonController(large_quota_push_out(), 1.0)
    assert c.quota_for(2 * GiB, 64 * MiB) == 2 * GiB - 64 * MiB
    assert c.quota_for(2 * GiB) == 2 * GiB  # no step known yet: all of it
    # the scheme's cap still bounds it
    assert DaemonController(push_out(), 1.0).quota_for(6 * GiB, 64 * MiB) == 512 * MiB


def test_a_gap_within_one_step_is_corrected_by_a_gain_fraction() -> None:
    """A reading one noisy region off is corrected gently, not all at once."""
    c = DaemonController(push_out(), 1.0)
    assert c.quota_for(40 * MiB, 64 * MiB) == 20 * MiB  # gain 0.5
    assert c.quota_for(100 * MiB, 64 * MiB) == 50 * MiB  # half beats all but a step
    assert c.quota_for(0, 64 * MiB) == model.IDLE_QUOTA_BYTES


def test_a_large_quota_context_closes_its_gap_in_one_iteration() -> None:
    """The tick sizes the quota from the coordinator's demand and the learnt step."""
    control = ContextControl(large_quota_push_out(), 1.0, step_bytes=64 * MiB)
    tick = control.tick(snap(0, {0: 14 * GiB, 1: 14 * GiB}), Coordinator(1))
    gap = 14 * GiB - 12 * GiB  # 7000 bp of 20 GiB down to 6000 bp
    assert tick.write_quota == gap - 64 * MiB


def test_in_flight_migrations_count_at_the_destination_until_the_lag_passes() -> None:
    ctx = pull_in()
    c = DaemonController(ctx, 1.0)
    c.note_applied(0.0, 0)
    c.note_applied(1.0, 1 * GiB)
    assert c.inflight_bytes == 1 * GiB
    control = ContextControl(ctx, 1.0)
    coordinator = Coordinator(1.0)
    control.tick(snap(0.0, {0: 4 * GiB, 1: 6 * GiB}, 0), coordinator)
    # 1 GiB moved; DAMON still sees it as cold on node 0: predicted 5000 bp, not 4000
    share = coordinator.decide(
        Member.of(
            ctx,
            deadband_bp=20,
            eligible_bytes={0: 4 * GiB, 1: 5 * GiB},
            capacity_bytes=CAP,
            inflight_bytes=1 * GiB,
            time_s=1.0,
        )
    )
    assert share.value_bp == 4444
    assert share.predicted_bp == 5000
    assert share.demand_bytes == 1 * GiB
    # once the lag has passed the bytes are no longer in flight
    c.note_applied(1.0 + default_lag_s(ctx) + 0.1, 1 * GiB)
    assert c.inflight_bytes == 0


def test_disabled_context_is_idle() -> None:
    ctx = push_out().model_copy(update={"enabled": False})
    tick = ContextControl(ctx, 1.0).tick(snap(0, {0: 18 * GiB, 1: 0}), Coordinator(1))
    assert tick.quota_bytes == model.IDLE_QUOTA_BYTES


def test_no_unreachable_warning_before_a_full_measurement_window() -> None:
    """Problem 6: at start nothing has aged enough to be seen; finding no memory to move
    then proves nothing, and the warning came at every start."""
    ctx = ContextConfig(
        name="pull",
        node=1,
        scheme=SchemeConfig(target_nid=0),
        goal=GoalConfig(metric="node_target_mem_bp", nid=0, target_bp=9000),
    )
    control = ContextControl(ctx, 1.0)
    coordinator = Coordinator(1.0)
    window = measurement_window_s(ctx)
    nothing_seen_yet = {0: 4 * GiB, 1: 0}  # 2000 bp; nothing hot seen on node 1
    early = [control.tick(snap(t, nothing_seen_yet), coordinator) for t in range(int(window))]
    assert not [n for tick in early for n in tick.notices]
    assert not any(tick.held for tick in early)
    late = [control.tick(snap(window + t, nothing_seen_yet), coordinator) for t in range(5)]
    warnings = [n.event for tick in late for n in tick.notices if n.level == "warning"]
    assert len(warnings) == 1 and warnings[0].startswith("goal unreachable")
    assert all(tick.held and tick.held_reason == "unreachable" for tick in late)
    # memory to move comes and goes: one episode, no new warning
    some = {0: 4 * GiB, 1: 64 * MiB}
    flapping = [
        control.tick(snap(window + 5 + t, some if t % 2 else nothing_seen_yet), coordinator)
        for t in range(20)
    ]
    assert not [n for tick in flapping for n in tick.notices if n.level == "warning"]


def test_a_dead_band_below_one_step_is_raised_and_said_once() -> None:
    """Problem 3: a band narrower than a region holds no reachable value; the floor is one
    measurement step (here 64 MiB of node 0's 20 GiB: 32 bp)."""
    control = ContextControl(push_out(6010, deadband_bp=0), 1.0, step_bytes=64 * MiB)
    coordinator = Coordinator(1.0)
    within_a_step = {0: 188 * 64 * MiB, 1: 0}  # 6016 bp: 6 bp above 6010, one region 32 bp
    ticks = [control.tick(snap(t, within_a_step), coordinator) for t in range(3)]
    assert all(tick.quota_bytes == model.IDLE_QUOTA_BYTES for tick in ticks)
    events = [n.event for tick in ticks for n in tick.notices]
    assert len(events) == 1
    assert events[0].startswith("dead band raised from 0 to 32 bp")


def test_the_step_is_learnt_from_the_regions_the_scheme_moved() -> None:
    control = ContextControl(push_out(), 1.0)
    coordinator = Coordinator(1.0)
    stats = Snapshot(0.0, {0: 14 * GiB, 1: 0}, CAP, SchemeStats(), 0, 0, True)
    control.tick(stats, coordinator)
    assert control.step_bytes is None  # nothing moved yet: the configured band stands
    moved = SchemeStats(nr_applied=24, sz_applied=24 * 64 * MiB)
    control.tick(replace(stats, time_s=1.0, stats=moved), coordinator)
    assert control.step_bytes == 64 * MiB


def test_default_lag_covers_resampling_and_minimum_age() -> None:
    ctx = push_out()
    assert default_lag_s(ctx) == (ctx.scheme.access_pattern.age_min + 3) * 1.0
    assert default_lag_s(push_out(lag_s=7.5)) == 7.5


def shared_pull(name: str, node: int) -> ContextConfig:
    """Hot pages of ``node`` come to node 0; the goal is node 0's share of hot memory."""
    return ContextConfig(
        name=name,
        node=node,
        scheme=SchemeConfig(target_nid=0),
        goal=GoalConfig(metric="node_eligible_mem_bp", nid=0, target_bp=7000),
    )


CAP3 = {0: 16 * GiB, 1: 32 * GiB, 2: 32 * GiB}


def report(
    ctx: ContextConfig,
    eligible: dict[int, int],
    t: float,
    *,
    inflight_bytes: int = 0,
    moves: tuple[tuple[float, int], ...] = (),
    seen_after_s: float = 0.0,
) -> Member:
    return Member.of(
        ctx,
        deadband_bp=20,
        eligible_bytes=eligible,
        capacity_bytes=CAP3,
        inflight_bytes=inflight_bytes,
        time_s=t,
        moves=moves,
        seen_after_s=seen_after_s,
    )


def test_quota_granted_to_a_sharer_still_sits_at_its_source() -> None:
    """Two promoters share DRAM's goal: the quota the first was just given has not moved
    yet, so the second counts it leaving CXL as well as arriving at DRAM. Counted at
    DRAM only, it inflated the total and understated the value (5454 bp, not 6000), and
    the second moved 0.85 GiB instead of 0.5: the shared goal overshot."""
    a, b = shared_pull("pull-a", 1), shared_pull("pull-b", 2)
    eligible = {0: 5 * GiB, 1: 5 * GiB // 2, 2: 5 * GiB // 2}  # 5000 bp
    coordinator = Coordinator(1.0)
    coordinator.decide(report(b, eligible, 0.0))
    first = coordinator.decide(report(a, eligible, 0.0))
    assert first.demand_bytes == 1 * GiB  # half of the 2 GiB gap
    coordinator.granted("pull-a", 1 * GiB)
    second = coordinator.decide(report(b, eligible, 0.0))
    assert second.predicted_bp == 6000
    assert second.demand_bytes == GiB // 2


def test_moves_after_the_shared_reading_leave_their_source_in_the_prediction() -> None:
    """The goal is read once, by its first context, whose reading may be an iteration
    older than a sharer's latest moves: those bytes are still at their source in it."""
    a, b = shared_pull("pull-a", 1), shared_pull("pull-b", 2)
    eligible = {0: 5 * GiB, 1: 5 * GiB // 2, 2: 5 * GiB // 2}
    moved = {0: 5 * GiB, 1: 5 * GiB // 2, 2: 3 * GiB // 2}  # 1 GiB left node 2 at t=1
    coordinator = Coordinator(1.0)
    coordinator.decide(report(a, eligible, 0.0))
    share = coordinator.decide(
        report(b, moved, 1.0, inflight_bytes=1 * GiB, moves=((1.0, 1 * GiB),))
    )
    assert share.value_bp == 5000  # pull-a's reading, one iteration old
    assert share.predicted_bp == 6000  # not 6/11 of the hot memory: 5454


def test_moves_of_another_goal_between_other_nodes_count_in_the_total() -> None:
    """A three-tier chain: while CXL -> DRAM moves are in flight, far CXL's share of hot
    memory reads too high (the moved pages are seen nowhere); its demoter used to move
    a region too many. A page that already arrived (older than ``seen_after_s``) and may
    have moved on counts once, where the reading sees it."""
    far = ContextConfig(
        name="far-to-cxl",
        node=2,
        scheme=SchemeConfig(target_nid=1),
        goal=GoalConfig(metric="node_eligible_mem_bp", nid=2, target_bp=500),
    )
    up = shared_pull("cxl-to-dram", 1)
    eligible = {0: 1 * GiB, 1: 0, 2: GiB // 2}  # 4.5 GiB on the way to DRAM
    coordinator = Coordinator(1.0)
    coordinator.decide(
        report(
            up,
            eligible,
            10.0,
            inflight_bytes=5 * GiB,
            moves=((5.0, GiB // 2), (9.0, 9 * GiB // 2)),  # the first has arrived
            seen_after_s=4.0,
        )
    )
    share = coordinator.decide(report(far, eligible, 10.0))
    assert share.value_bp == 833  # the one view counts them too: 3333 as read
    assert share.predicted_bp == 833  # 0.5 of 6 GiB
