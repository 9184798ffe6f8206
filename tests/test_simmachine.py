"""The simulated machine behaves as the kernel does where the kernel's rules are known."""

from __future__ import annotations

from dataclasses import replace

from damond.backend.simulated.machine import SimMachine
from damond.config import GiB, MemorySetConfig, MiB, ShiftConfig, SimNodeConfig, SimulationConfig
from damond.config.simulation import SetPhaseConfig
from damond.model import damon as model


def machine(**cfg: object) -> SimMachine:
    base = SimulationConfig(
        nodes=(
            SimNodeConfig(id=0, capacity_bytes=8 * GiB),
            SimNodeConfig(id=1, capacity_bytes=8 * GiB),
        ),
        sets=(MemorySetConfig(name="hot", bytes=4 * GiB, access_rate=1.0, placement=1),),
        shifts=(),
        clock_jitter=0.0,
    )
    return SimMachine(base.model_copy(update=cfg))


def context(
    quota_bytes: int,
    age_min: int = 3,
    goals: tuple[model.QuotaGoal, ...] = (),
    tuner: model.GoalTuner = model.GoalTuner.CONSIST,
    name: str = "pull",
) -> model.Context:
    return model.Context(
        name=name,
        operations=model.Operations.PADDR,
        intervals=model.Intervals(sample_us=50_000, aggr_us=1_000_000),
        nodes=(1,),
        schemes=(
            model.Scheme(
                action=model.Action.MIGRATE_HOT,
                target_nid=0,
                access_pattern=model.AccessPattern(nr_accesses_min=10, age_min=age_min),
                quota=model.Quota(
                    bytes=quota_bytes, reset_interval_ms=1000, goals=goals, goal_tuner=tuner
                ),
            ),
        ),
    )


def test_nothing_is_eligible_before_it_has_aged() -> None:
    m = machine()
    scheme = m.add_scheme(context(model.IDLE_QUOTA_BYTES, age_min=3))
    m.advance_to(3.0)
    assert sum(m.eligible_bytes(scheme).values()) == 0
    m.advance_to(5.0)
    assert m.eligible_bytes(scheme)[1] == 4 * GiB


def test_size_quota_bounds_each_reset_interval() -> None:
    m = machine()
    scheme = m.add_scheme(context(256 * MiB))
    moved = []
    for t in range(1, 15):
        before = scheme.stats.sz_applied
        m.advance_to(float(t))
        moved.append(scheme.stats.sz_applied - before)
    assert max(moved) == 256 * MiB
    assert sum(moved) > 0


def test_zero_size_quota_means_unlimited_but_bandwidth_still_binds() -> None:
    m = machine(bandwidth_bytes_per_s=1 * GiB)
    scheme = m.add_scheme(context(0))
    m.advance_to(10.0)
    assert scheme.stats.sz_applied == 4 * GiB
    m2 = machine(bandwidth_bytes_per_s=512 * MiB)
    s2 = m2.add_scheme(context(0))
    m2.advance_to(10.0)
    assert s2.stats.sz_applied == 4 * GiB
    # the kdamond migrated it all at once and waited for the pages: 8 s at 512 MiB/s
    assert m2.mover.engine_free_at >= s2.monitor.last_t + 8.0 - 1e-9
    assert s2.monitor.aggregations == 4  # and has not sampled since


def test_the_idle_quota_moves_nothing() -> None:
    m = machine()
    scheme = m.add_scheme(context(model.IDLE_QUOTA_BYTES))
    m.advance_to(30.0)
    assert scheme.stats.sz_applied == 0


def test_a_full_destination_gets_nothing_but_the_attempt_is_charged() -> None:
    m = machine(
        nodes=(
            SimNodeConfig(id=0, capacity_bytes=1 * GiB),
            SimNodeConfig(id=1, capacity_bytes=8 * GiB),
        ),
        sets=(
            MemorySetConfig(name="filler", bytes=1 * GiB, access_rate=0.0, placement=0),
            MemorySetConfig(name="hot", bytes=2 * GiB, access_rate=1.0, placement=1),
        ),
    )
    scheme = m.add_scheme(context(256 * MiB))
    m.advance_to(20.0)
    assert scheme.stats.sz_applied == 0
    assert scheme.stats.sz_tried > 0
    assert m.used[0] <= m.capacity[0]
    assert scheme.stats.qt_exceeds > 0


def test_migrated_memory_looks_cold_at_its_destination_until_resampled_and_aged() -> None:
    m = machine(bandwidth_bytes_per_s=8 * GiB)
    scheme = m.add_scheme(context(0, age_min=3))
    m.advance_to(4.0)  # eligible from the fourth aggregation on: moved at once
    assert m.used[0] == 4 * GiB
    moved_at = scheme.monitor.aggregations
    t = 4.0
    while scheme.monitor.aggregations < moved_at + 4:
        assert m.eligible_bytes(scheme)[0] == 0  # sampled again, age restarting
        t += 0.25
        m.advance_to(t)
    assert m.eligible_bytes(scheme)[0] == 4 * GiB


def test_consist_tuner_starts_from_one_byte() -> None:
    goal = model.QuotaGoal(model.GoalMetric.USER_INPUT, target_value=5000, current_value=0)
    m = machine()
    scheme = m.add_scheme(context(1 * GiB, goals=(goal,)))
    m.advance_to(10.0)
    assert scheme.esz == 2**10  # doubled once per reset interval from 1 byte
    assert scheme.stats.sz_applied == 0  # nothing fits a 1 KiB quota of 64 MiB regions...
    m.advance_to(40.0)
    assert scheme.stats.sz_applied > 0  # ...until the quota has grown


def test_temporal_tuner_stops_at_the_goal() -> None:
    goal = model.QuotaGoal(model.GoalMetric.USER_INPUT, target_value=5000, current_value=5000)
    m = machine()
    scheme = m.add_scheme(context(1 * GiB, goals=(goal,), tuner=model.GoalTuner.TEMPORAL))
    m.advance_to(20.0)
    assert scheme.esz == 0 and scheme.stats.sz_applied == 0
    scheme.goals = [replace(goal, current_value=1000)]
    m.advance_to(30.0)
    assert scheme.esz == 1 * GiB and scheme.stats.sz_applied > 0


def test_native_goal_measures_the_eligible_share() -> None:
    goal = model.QuotaGoal(model.GoalMetric.NODE_ELIGIBLE_MEM_BP, target_value=5000, nid=0)
    m = machine()
    scheme = m.add_scheme(context(4 * GiB, goals=(goal,), tuner=model.GoalTuner.TEMPORAL))
    m.advance_to(60.0)
    assert m.goal_current(scheme, goal) >= 5000


def test_pingpong_counts_chunks_that_return_within_the_window() -> None:
    m = machine(bandwidth_bytes_per_s=8 * GiB)
    pull = m.add_scheme(context(0))
    m.advance_to(6.0)
    m.remove_scheme("pull")
    push = m.add_scheme(
        replace(
            context(0),
            name="push",
            nodes=(0,),
            schemes=(replace(context(0).schemes[0], target_nid=1),),
        )
    )
    m.advance_to(20.0)
    assert pull.stats.sz_applied == 4 * GiB
    assert push.stats.sz_applied == 4 * GiB
    assert push.pingpong_bytes == 4 * GiB == m.pingpong_bytes


def test_shift_moves_the_hot_set() -> None:
    m = machine(
        sets=(
            MemorySetConfig(name="hot", bytes=2 * GiB, access_rate=1.0, placement=1),
            MemorySetConfig(name="cold", bytes=2 * GiB, access_rate=0.0, placement=0),
        ),
        shifts=(ShiftConfig(at_s=5, from_set="hot", to_set="cold", fraction=0.5),),
    )
    hot_on = {n: sum(c.size for c in m.by_node[n] if c.rate > 0.5) for n in (0, 1)}
    assert hot_on == {0: 0, 1: 2 * GiB}
    m.advance_to(6.0)
    hot_on = {n: sum(c.size for c in m.by_node[n] if c.rate > 0.5) for n in (0, 1)}
    assert hot_on == {0: 1 * GiB, 1: 1 * GiB}


def test_same_seed_same_run() -> None:
    def run() -> list[int]:
        m = machine()
        m.add_scheme(context(128 * MiB))
        out = []
        for t in range(1, 30):
            m.advance_to(float(t))
            out.append(m.used[0])
        return out

    assert run() == run()


def set_bytes(m: SimMachine, name: str) -> dict[int, int]:
    return {n: sum(c.size for c in m.by_node[n] if c.set_name == name) for n in (0, 1)}


def test_a_set_grows_where_it_is_placed_and_shrinks_wherever_it_is() -> None:
    m = machine(
        sets=(
            MemorySetConfig(name="hot", bytes=2 * GiB, access_rate=1.0, placement=1),
            MemorySetConfig(name="cold", bytes=1 * GiB, access_rate=0.0, placement=0),
        ),
        phases=(
            SetPhaseConfig(at_s=5, set="hot", bytes=5 * GiB),
            SetPhaseConfig(at_s=10, set="hot", bytes=1 * GiB),
        ),
        events=(SetPhaseConfig(at_s=15, set="cold", bytes=0),),
    )
    scheme = m.add_scheme(context(model.IDLE_QUOTA_BYTES))
    m.advance_to(4.0)
    assert set_bytes(m, "hot") == {0: 0, 1: 2 * GiB}
    m.advance_to(5.0)
    assert set_bytes(m, "hot") == {0: 0, 1: 5 * GiB}
    assert m.used == {0: 1 * GiB, 1: 5 * GiB}
    # new memory is unsampled: it is eligible only once it has aged, like any other
    assert m.eligible_bytes(scheme)[1] == 2 * GiB
    m.advance_to(9.0)
    assert m.eligible_bytes(scheme)[1] == 5 * GiB
    m.advance_to(10.0)
    assert sum(set_bytes(m, "hot").values()) == 1 * GiB
    assert m.eligible_bytes(scheme)[1] == 1 * GiB
    m.advance_to(15.0)
    assert set_bytes(m, "cold") == {0: 0, 1: 0}
    assert m.used == {0: 0, 1: 1 * GiB}


def test_a_set_grows_onto_other_nodes_when_its_own_is_full_and_stops_when_all_are() -> None:
    m = machine(
        sets=(MemorySetConfig(name="hot", bytes=7 * GiB, access_rate=1.0, placement=1),),
        phases=(SetPhaseConfig(at_s=1, set="hot", bytes=20 * GiB),),
    )
    m.advance_to(1.0)
    assert set_bytes(m, "hot") == {0: 8 * GiB, 1: 8 * GiB}
    assert m.used == m.capacity


def test_migrations_are_counted_per_route_and_set() -> None:
    m = machine()
    m.add_scheme(context(0))
    m.advance_to(10.0)
    assert m.flows == {(1, 0, "hot"): 4 * GiB}
    assert m.migrated_bytes == 4 * GiB
