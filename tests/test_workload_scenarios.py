"""Workload-scoped goals on the simulated machine: two cgroups sharing DRAM with their
own targets, a stall goal, and the machine's readings and filters they rest on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from damond.backend.simulated.machine import SimMachine
from damond.config import GiB, MiB, Settings, load_settings
from damond.config.simulation import MemorySetConfig, SimNodeConfig, SimulationConfig
from damond.control import workload
from damond.model import damon as model
from damond.simulation.run import SimulationResult, run_simulation

SCENARIOS = Path(__file__).resolve().parent.parent / "benchmarks" / "scenarios"


def run(name: str, duration_s: float) -> tuple[Settings, SimulationResult]:
    settings = load_settings(SCENARIOS / f"{name}.toml", {"backend": "simulated"})
    return settings, asyncio.run(run_simulation(settings, duration_s))


def test_two_cgroups_each_reach_their_own_dram_target_moving_only_their_pages() -> None:
    settings, result = run("two-cgroups", 600.0)
    cgroup_of = {s.name: s.cgroup for s in settings.simulation.sets}
    moved_by_cgroup: dict[str, int] = {}
    for (src, dst, set_name), moved in result.marks[-1].flows.items():
        assert (src, dst) == (1, 0)  # promotions only: nobody undid anybody's moves
        cgroup = cgroup_of[set_name]
        moved_by_cgroup[cgroup] = moved_by_cgroup.get(cgroup, 0) + moved
    by_name = {c.name: c for c in result.contexts}
    for name, path in (("db-promote", "/db"), ("batch-promote", "/batch")):
        ctx = by_name[name]
        assert ctx.time_to_goal_s is not None, name
        assert abs(ctx.final_bp - ctx.target_bp) <= 100, name
        assert not ctx.held, name
        # what its scheme migrated is exactly what its cgroup's pages moved
        assert ctx.migrated_bytes == moved_by_cgroup[path], name
    assert set(moved_by_cgroup) == {"/db", "/batch"}
    assert result.churn_bytes == 0
    assert not [w for w in result.warnings if "cannot be met together" in w.message]


def test_a_stall_goal_holds_the_simulated_stall_near_its_target() -> None:
    settings, result = run("psi-goal", 600.0)
    (ctx,) = result.contexts
    target = settings.contexts[0].goal.target
    assert ctx.time_to_goal_s is not None
    assert abs(ctx.final_bp - target) <= 0.05 * target
    assert ctx.overshoot_bp == 0  # never promoted past its target
    # hot memory is left on CXL: only what the target needed moved
    assert 8 * GiB < ctx.migrated_bytes < 16 * GiB


def machine(sets: tuple[MemorySetConfig, ...]) -> SimMachine:
    cfg = SimulationConfig(
        nodes=(
            SimNodeConfig(id=0, capacity_bytes=4 * GiB),
            SimNodeConfig(id=1, capacity_bytes=8 * GiB, latency_ns=300),
        ),
        sets=sets,
        shifts=(),
    )
    return SimMachine(cfg)


def test_the_machine_reads_node_cgroup_lru_and_stall_as_the_kernel_counts_them() -> None:
    m = machine(
        (
            MemorySetConfig(name="a", bytes=1 * GiB, access_rate=1.0, placement=1, cgroup="/a"),
            MemorySetConfig(name="ab", bytes=1 * GiB, access_rate=0.0, placement=0, cgroup="/a/b"),
            MemorySetConfig(name="root", bytes=512 * MiB, access_rate=0.5, placement=0),
        )
    )
    r = m.memory()
    assert r.node_total_bytes == {0: 4 * GiB, 1: 8 * GiB}
    assert r.node_free_bytes == {0: 4 * GiB - 1536 * MiB, 1: 7 * GiB}
    assert r.memcg_node_bytes["/a"] == {0: 1 * GiB, 1: 1 * GiB}  # its child's pages too
    assert r.memcg_node_bytes["/a/b"] == {0: 1 * GiB, 1: 0}
    assert r.memcg_node_bytes["/"] == {0: 1536 * MiB, 1: 1 * GiB}
    assert (r.active_bytes, r.inactive_bytes) == (1536 * MiB, 1 * GiB)
    assert workload.memory_value(model.GoalMetric.NODE_MEMCG_USED_BP, 1, "/a", r) == 1250
    # 1 GiB at rate 1 on node 1: 100000 accesses/s, each 200 ns slower than node 0 (100 ns)
    m.advance_to(10.0)
    assert m.memory().psi_some_total_us == pytest.approx(10 * 100_000 * 200 / 1000, rel=1e-6)


def test_a_memcg_filter_keeps_a_scheme_to_its_cgroups_pages() -> None:
    m = machine(
        (
            MemorySetConfig(name="a", bytes=1 * GiB, access_rate=1.0, placement=1, cgroup="/a"),
            MemorySetConfig(name="b", bytes=1 * GiB, access_rate=1.0, placement=1, cgroup="/b"),
        )
    )
    memcg_a = model.Filter(model.FilterType.MEMCG, memcg_path="/a")
    goal = model.QuotaGoal(model.GoalMetric.NODE_MEMCG_USED_BP, 10_000, nid=0, path="/a")
    scheme = model.Scheme(
        action=model.Action.MIGRATE_HOT,
        access_pattern=model.AccessPattern(nr_accesses_min=1, age_min=0),
        quota=model.Quota(bytes=4 * GiB, goals=(goal,)),
        target_nid=0,
        filters=(memcg_a,),
    )
    ctx = model.Context(
        "a", model.Operations.PADDR, model.Intervals(50_000, 1_000_000), (1,), (), (scheme,)
    )
    sim = m.add_scheme(ctx)
    m.advance_to(60.0)
    assert m.flows == {(1, 0, "a"): 1 * GiB}
    # the kernel's own value of its goal is the one damond computes from the readings
    r = m.memory()
    assert sim.goal_current(goal) == workload.memory_value(goal.metric, 0, "/a", r) == 2500


def test_an_anon_filter_sees_which_sets_are_anonymous() -> None:
    m = machine(
        (
            MemorySetConfig(name="heap", bytes=512 * MiB, access_rate=1.0, placement=1),
            MemorySetConfig(
                name="cache", bytes=512 * MiB, access_rate=1.0, placement=1, anon=False
            ),
        )
    )
    files_only = model.Filter(model.FilterType.ANON, allow=False)  # reject anonymous pages
    scheme = model.Scheme(
        action=model.Action.MIGRATE_HOT,
        access_pattern=model.AccessPattern(nr_accesses_min=1, age_min=0),
        quota=model.Quota(bytes=4 * GiB),
        target_nid=0,
        filters=(files_only,),
    )
    ctx = model.Context(
        "f", model.Operations.PADDR, model.Intervals(50_000, 1_000_000), (1,), (), (scheme,)
    )
    m.add_scheme(ctx)
    m.advance_to(30.0)
    assert m.flows == {(1, 0, "cache"): 512 * MiB}
