"""The goal metrics of the machine's memory, which way schemes move them, DAMOS filters,
and how the plan groups, sizes and holds contexts steering them (all pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from damond.config import ConfigError, ContextConfig, GiB, MiB, load_settings
from damond.control import workload
from damond.control.conflicts import Move, conflicts
from damond.control.coordinator import Coordinator
from damond.control.pageclass import PageClass
from damond.control.plan import HELD_INFEASIBLE, HELD_UNMEASURED, plan
from damond.control.tick import ContextControl
from damond.model import damon as model
from damond.model.filtering import Page, acts_on_cgroup, allowed, cgroups_acted_on
from damond.model.measurement import MemoryReadings, SchemeStats, Snapshot

M = model.GoalMetric
F = model.FilterType
HOT = PageClass(0.5, 1.0, 3.0, 2.0**32)


def readings(**kw: Any) -> MemoryReadings:
    base: dict[str, Any] = {
        "node_total_bytes": {0: 3000, 1: 9000},
        "node_free_bytes": {0: 1000, 1: 8999},
        "memcg_node_bytes": {"/db": {0: 1499, 1: 10}, "/": {0: 2000, 1: 1}},
        "active_bytes": 1,
        "inactive_bytes": 2,
    }
    return MemoryReadings(**(base | kw))


def ctx(**kw: Any) -> ContextConfig:
    data: dict[str, Any] = {
        "name": "c",
        "node": 1,
        "scheme": {"target_nid": 0},
        "goal": {"metric": "node_mem_used_bp", "nid": 0, "target_bp": 5000},
    }
    return ContextConfig.model_validate(data | kw)


# --- values ---------------------------------------------------------------------------


def test_node_metrics_are_the_kernels_floored_ratios_of_the_nodes_total() -> None:
    r = readings()
    assert workload.memory_value(M.NODE_MEM_USED_BP, 0, "", r) == 6666  # 2000/3000
    assert workload.memory_value(M.NODE_MEM_FREE_BP, 0, "", r) == 3333
    assert workload.memory_value(M.NODE_MEM_USED_BP, 1, "", r) == 1  # 1/9000 -> 1.1
    assert workload.memory_value(M.NODE_MEMCG_USED_BP, 0, "/db", r) == 4996  # 1499/3000
    assert workload.memory_value(M.NODE_MEMCG_FREE_BP, 0, "/db", r) == 5003


def test_a_node_without_memory_reads_as_the_kernel_reads_an_invalid_node() -> None:
    r = readings()
    assert workload.memory_value(M.NODE_MEM_USED_BP, 7, "", r) == 0
    assert workload.memory_value(M.NODE_MEM_FREE_BP, 7, "", r) == 10_000


def test_active_and_inactive_are_shares_of_all_lru_memory() -> None:
    r = readings(active_bytes=3 * GiB, inactive_bytes=1 * GiB)
    assert workload.memory_value(M.ACTIVE_MEM_BP, 0, "", r) == 7500
    assert workload.memory_value(M.INACTIVE_MEM_BP, 0, "", r) == 2500
    empty = readings(active_bytes=0, inactive_bytes=0)
    assert workload.memory_value(M.ACTIVE_MEM_BP, 0, "", empty) == 0


def test_stall_growth_is_scaled_to_one_reset_interval() -> None:
    assert workload.psi_per_interval(None, 5.0, 1000, 1.0) is None
    assert workload.psi_per_interval((5.0, 1000), 5.0, 2000, 1.0) is None
    # 30 ms of stall over 3 s is 10 ms per 1 s interval, 20 ms per 2 s interval
    assert workload.psi_per_interval((2.0, 1000), 5.0, 31_000, 1.0) == 10_000
    assert workload.psi_per_interval((2.0, 1000), 5.0, 31_000, 2.0) == 20_000


# --- directions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "nid", "raises"),
    [
        ("node_mem_used_bp", 0, True),  # pages into node 0
        ("node_mem_free_bp", 0, False),
        ("node_mem_used_bp", 1, False),  # pages out of node 1
        ("node_mem_free_bp", 1, True),
    ],
)
def test_moving_pages_into_a_node_raises_its_used_and_lowers_its_free_memory(
    metric: str, nid: int, raises: bool
) -> None:
    c = ctx(goal={"metric": metric, "nid": nid, "target_bp": 100})
    assert workload.raises_value(c) is raises


def test_a_cgroups_metric_moves_only_through_the_cgroups_pages() -> None:
    goal = {"metric": "node_memcg_used_bp", "nid": 0, "path": "/db", "target_bp": 100}
    own = [{"type": "memcg", "memcg_path": "/db"}]
    other = [{"type": "memcg", "memcg_path": "/batch"}]
    assert workload.raises_value(ctx(goal=goal, scheme={"target_nid": 0, "filters": own}))
    assert workload.raises_value(ctx(goal=goal, scheme={"target_nid": 0})) is True
    excluded = ctx(goal=goal, scheme={"target_nid": 0, "filters": other})
    assert workload.raises_value(excluded) is None


def test_promotion_lowers_stall_and_the_backends_tiers_decide_what_promotion_is() -> None:
    goal = {"metric": "some_mem_psi_us", "target_us": 1000}
    promoter = ctx(goal=goal)  # node 1 -> node 0
    assert workload.raises_value(promoter) is False
    assert workload.raises_value(promoter, {0: 1, 1: 0}) is True  # node 0 is the slow one
    assert workload.raises_value(promoter, {0: 1, 1: 1}) is None


def load_text(tmp_path: Path, text: str) -> None:
    path = tmp_path / "damond.toml"
    path.write_text(text)
    load_settings(path)


def test_migration_cannot_steer_the_lru_balance_and_the_config_says_why(tmp_path: Path) -> None:
    active = ctx(goal={"metric": "active_mem_bp", "target_bp": 5000})
    assert workload.raises_value(active) is None
    text = 'backend = "simulated"\n[[contexts]]\nname = "a"\nnode = 1\n'
    text += 'scheme = { target_nid = 0 }\ngoal = { metric = "active_mem_bp", target_bp = 5000 }\n'
    with pytest.raises(ConfigError, match=r"scheme\.action: active_mem_bp is moved only by lru_"):
        load_text(tmp_path, text)


def test_a_filter_excluding_the_goals_cgroup_is_refused(tmp_path: Path) -> None:
    text = 'backend = "simulated"\n[[contexts]]\nname = "a"\nnode = 1\n'
    text += 'scheme = { target_nid = 0, filters = [ { type = "memcg", memcg_path = "/b" } ] }\n'
    text += 'goal = { metric = "node_memcg_used_bp", nid = 0, path = "/a", target_bp = 10 }\n'
    with pytest.raises(ConfigError, match=r"scheme\.filters: exclude every page of .*/a"):
        load_text(tmp_path, text)


# --- filters --------------------------------------------------------------------------


def memcg(path: str, allow: bool = True, matching: bool = True) -> model.Filter:
    return model.Filter(F.MEMCG, matching=matching, allow=allow, memcg_path=path)


def test_a_memcg_filter_matches_its_cgroup_exactly_not_its_descendants() -> None:
    only_a = [memcg("/a")]
    assert allowed(only_a, Page(memcg="/a"))
    assert not allowed(only_a, Page(memcg="/a/b"))  # last filter allows: the rest rejected
    assert not allowed(only_a, Page(memcg="/"))


def test_the_first_deciding_filter_wins_and_the_default_follows_the_last_one() -> None:
    no_b = [memcg("/b", allow=False)]
    assert allowed(no_b, Page(memcg="/a"))  # last filter rejects: the rest allowed
    assert not allowed(no_b, Page(memcg="/b"))
    anon_not_a = [memcg("/a", allow=False), model.Filter(F.ANON)]
    assert not allowed(anon_not_a, Page(memcg="/a", anon=True))
    assert allowed(anon_not_a, Page(memcg="/b", anon=True))
    assert not allowed(anon_not_a, Page(memcg="/b", anon=False))
    not_a = [memcg("/a", allow=True, matching=False)]  # allow what is not /a
    assert allowed(not_a, Page(memcg="/b")) and not allowed(not_a, Page(memcg="/a"))


def test_a_page_a_core_filter_allows_skips_the_operations_filters() -> None:
    addr = model.Filter(F.ADDR, addr_start=0, addr_end=1 * GiB)
    filters = [addr, memcg("/a")]
    assert allowed(filters, Page(memcg="/b", addr=0))  # allowed by the addr filter
    assert not allowed(filters, Page(memcg="/b", addr=2 * GiB))
    assert allowed(filters, Page(memcg="/a", addr=2 * GiB))


def test_which_cgroups_a_schemes_filters_let_through() -> None:
    assert cgroups_acted_on([]) is None
    assert cgroups_acted_on([memcg("/a")]) == frozenset({"/a"})
    assert cgroups_acted_on([memcg("/a"), memcg("/b")]) == frozenset({"/a", "/b"})
    assert cgroups_acted_on([memcg("/a", allow=False)]) is None
    assert acts_on_cgroup([memcg("/a", allow=False)], "/b")
    assert not acts_on_cgroup([memcg("/a", allow=False)], "/a")


# --- the plan -------------------------------------------------------------------------


def test_moves_of_disjoint_cgroups_pages_never_conflict() -> None:
    a_in = Move("a-in", 1, 0, HOT, frozenset({"/a"}))
    b_out = Move("b-out", 0, 1, HOT, frozenset({"/b"}))
    assert conflicts([a_in, b_out]) == []
    a_out = Move("a-out", 0, 1, HOT, frozenset({"/a"}))
    assert conflicts([a_in, a_out]) == [frozenset({"a-in", "a-out"})]
    anyone_out = Move("out", 0, 1, HOT)
    assert conflicts([a_in, anyone_out]) == [frozenset({"a-in", "out"})]


def member(c: ContextConfig, memory: MemoryReadings, eligible_on_source: int) -> Any:
    from damond.control.plan import Member

    metric = M(c.goal.metric)
    return Member.of(
        c,
        deadband_bp=20,
        eligible_bytes=workload.node_amounts(metric, c.goal.path, memory),
        capacity_bytes=memory.node_total_bytes,
        inflight_bytes=0,
        time_s=0.0,
        movable_bytes=workload.movable_bytes(c, eligible_on_source, memory),
    )


def test_a_used_promoter_and_a_free_demoter_of_one_node_steer_one_quantity() -> None:
    """The kernel's mtier pair: promote while DRAM is under 99.7 % used, demote while
    under 0.5 % free (99.5 % used): between the two, both rest; outside, one moves."""
    promote = ctx(name="p", goal={"metric": "node_mem_used_bp", "nid": 0, "target_bp": 9970})
    demote = ctx(
        name="d",
        node=0,
        scheme={"target_nid": 1, "action": "migrate_cold"},
        goal={"metric": "node_mem_free_bp", "nid": 0, "target_bp": 50},
    )
    total = 100 * GiB

    def at(used_bp: int) -> dict[str, Any]:
        free = total - total * used_bp // 10_000
        memory = readings(node_total_bytes={0: total, 1: total}, node_free_bytes={0: free, 1: 0})
        result = plan([member(promote, memory, 10 * GiB), member(demote, memory, 10 * GiB)])
        assert result.infeasible == [] and result.conflicts == []
        return {n: s.demand_bytes for n, s in result.shares.items()}

    assert at(9960) == {"p": 0, "d": 0}
    assert at(9900)["p"] == pytest.approx(70 * total // 10_000, rel=0.03) and at(9900)["d"] == 0
    assert at(9990)["d"] == pytest.approx(40 * total // 10_000, rel=0.03) and at(9990)["p"] == 0


def test_goals_of_two_cgroups_are_two_goals_and_each_moves_only_what_it_has() -> None:
    goal_a = {"metric": "node_memcg_used_bp", "nid": 0, "path": "/a", "target_bp": 5000}
    goal_b = goal_a | {"path": "/b"}
    a = ctx(name="a", goal=goal_a, scheme={"target_nid": 0, "filters": [memcg_cfg("/a")]})
    b = ctx(name="b", goal=goal_b, scheme={"target_nid": 0, "filters": [memcg_cfg("/b")]})
    memory = readings(
        node_total_bytes={0: 16 * GiB, 1: 48 * GiB},
        node_free_bytes={0: 8 * GiB, 1: 30 * GiB},
        memcg_node_bytes={"/a": {0: 4 * GiB, 1: 1 * GiB}, "/b": {0: 8 * GiB, 1: 10 * GiB}},
    )
    result = plan([member(a, memory, 6 * GiB), member(b, memory, 6 * GiB)])
    assert result.conflicts == [] and not any(s.sharers for s in result.shares.values())
    assert result.shares["a"].demand_bytes == 1 * GiB  # 4 GiB wanted, only 1 GiB of /a there
    assert result.shares["b"].demand_bytes == 0  # at its target already
    assert result.shares["a"].value_bp == 2500


def memcg_cfg(path: str) -> dict[str, Any]:
    return {"type": "memcg", "memcg_path": path}


def test_opposed_goals_of_one_cgroup_are_infeasible_together() -> None:
    goal = {"metric": "node_memcg_used_bp", "nid": 0, "path": "/a"}
    up = ctx(name="up", goal=goal | {"target_bp": 6000})
    down = ctx(name="down", node=0, scheme={"target_nid": 1}, goal=goal | {"target_bp": 1000})
    memory = readings(
        node_total_bytes={0: 16 * GiB, 1: 16 * GiB},
        memcg_node_bytes={"/a": {0: 4 * GiB, 1: 4 * GiB}},
    )
    result = plan([member(up, memory, 4 * GiB), member(down, memory, 4 * GiB)])
    assert result.shares["up"].held_reason == HELD_INFEASIBLE


# --- the tick -------------------------------------------------------------------------


BIG_QUOTA = {"target_nid": 0, "quota": {"max_bytes": 16 * GiB}}


def snapshot(t: float, memory: MemoryReadings | None, applied: int = 0) -> Snapshot:
    stats = SchemeStats(nr_applied=applied // (64 * MiB), sz_applied=applied)
    return Snapshot(t, {0: 0, 1: 8 * GiB}, {0: 16 * GiB, 1: 16 * GiB}, stats, 0, 0, True, memory)


def test_a_stall_goal_waits_for_two_readings_then_promotes_in_proportion() -> None:
    c = ctx(goal={"metric": "some_mem_psi_us", "target_us": 50_000}, scheme=BIG_QUOTA)
    control = ContextControl(c, 1.0, step_bytes=64 * MiB)
    coordinator = Coordinator(1.0)
    first = control.tick(snapshot(0.0, readings(psi_some_total_us=0)), coordinator)
    assert first.quota_bytes == model.IDLE_QUOTA_BYTES and not first.held
    # 100 ms of stall in 1 s, target 50 ms: half of the 8 GiB on the slow node, by half
    second = control.tick(snapshot(1.0, readings(psi_some_total_us=100_000)), coordinator)
    assert second.metric_bp == 100_000
    assert second.quota_bytes == pytest.approx(4 * GiB * c.controller.gain, rel=0.05)
    # at the target (within its dead band of 20 bp of it): at rest
    third = control.tick(snapshot(2.0, readings(psi_some_total_us=150_050)), coordinator)
    assert third.quota_bytes == model.IDLE_QUOTA_BYTES


def test_a_goal_without_its_readings_is_held_and_said_once() -> None:
    goal = {"metric": "node_memcg_used_bp", "nid": 0, "path": "/gone", "target_bp": 100}
    control = ContextControl(ctx(goal=goal), 1.0)
    coordinator = Coordinator(1.0)
    ticks = [control.tick(snapshot(t, readings()), coordinator) for t in range(3)]
    assert all(t.held_reason == HELD_UNMEASURED for t in ticks)
    said = [n.event for t in ticks for n in t.notices]
    assert len(said) == 1 and "no reading of cgroup /gone" in said[0]
    assert all(t.quota_bytes == model.IDLE_QUOTA_BYTES for t in ticks)


def test_a_free_goal_reports_its_own_value_and_a_promoter_fills_the_node() -> None:
    goal = {"metric": "node_mem_free_bp", "nid": 0, "target_bp": 2500}
    control = ContextControl(ctx(goal=goal, scheme=BIG_QUOTA), 1.0, step_bytes=64 * MiB)
    memory = readings(node_total_bytes={0: 16 * GiB, 1: 16 * GiB}, node_free_bytes={0: 8 * GiB})
    tick = control.tick(snapshot(0.0, memory), Coordinator(1.0))
    assert tick.metric_bp == 5000
    # a promoter lowers free memory: 2500 bp of 16 GiB to go, 4 GiB, all but a step at once
    assert tick.quota_bytes == 4 * GiB - 64 * MiB
