"""LRU goals: ``lru_prio`` / ``lru_deprio`` schemes steer ``active_mem_bp`` and
``inactive_mem_bp`` (config checks, direction, the simulated LRU lists, a daemon-mode
scenario, and what the sysfs backend writes)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from damond.backend.simulated import lru
from damond.backend.simulated.machine import SimMachine
from damond.config import ConfigError, ContextConfig, GiB, load_settings
from damond.config.simulation import MemorySetConfig, SimNodeConfig, SimulationConfig
from damond.control import workload
from damond.control.goalreading import GoalReader
from damond.control.plan import Member, plan
from damond.control.translation import build_context
from damond.model import damon as model
from damond.model.measurement import MemoryReadings, SchemeStats, Snapshot
from damond.simulation.run import run_simulation
from tests.fakedamon import make_machine
from tests.sysfs_support import backend

SCENARIOS = Path(__file__).resolve().parent.parent / "benchmarks" / "scenarios"
ACTIVE = {"metric": "active_mem_bp", "target_bp": 4000}


def lru_ctx(
    action: str = "lru_prio", goal: dict[str, Any] | None = None, **scheme: Any
) -> dict[str, Any]:
    scheme["action"] = action
    return {"name": "lru", "node": 0, "scheme": scheme, "goal": goal or ACTIVE}


def errors_of(tmp_path: Path, ctx: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"backend": "simulated", "contexts": [ctx]})
    return info.value.errors


def test_target_nid_is_required_by_migration_and_refused_by_lru_actions(tmp_path: Path) -> None:
    assert errors_of(tmp_path, lru_ctx(target_nid=1)) == [
        "contexts[0].scheme: target_nid: lru_prio moves pages between LRU lists on their "
        "node; remove target_nid"
    ]
    migrate = {"name": "m", "node": 1, "scheme": {}, "goal": {"nid": 0, "target_bp": 10}}
    assert errors_of(tmp_path, migrate) == [
        "contexts[0].scheme: target_nid: required by migrate_hot: the node it moves pages to"
    ]


def test_lru_goals_and_lru_actions_go_together(tmp_path: Path) -> None:
    used = {"metric": "node_mem_used_bp", "nid": 0, "target_bp": 5000}
    assert errors_of(tmp_path, lru_ctx("lru_deprio", used)) == [
        "contexts[0].goal.metric: lru_deprio moves pages between LRU lists, so it steers "
        "only active_mem_bp or inactive_mem_bp, not node_mem_used_bp"
    ]
    migrate = {"name": "m", "node": 1, "scheme": {"target_nid": 0}, "goal": ACTIVE}
    assert errors_of(tmp_path, migrate) == [
        "contexts[0].scheme.action: active_mem_bp is moved only by lru_prio or lru_deprio, "
        "not migrate_hot: migration keeps pages on their LRU list"
    ]


@pytest.mark.parametrize(
    ("action", "metric", "direction"),
    [
        ("lru_prio", "active_mem_bp", model.Direction.RAISES),
        ("lru_prio", "inactive_mem_bp", model.Direction.LOWERS),
        ("lru_deprio", "active_mem_bp", model.Direction.LOWERS),
        ("lru_deprio", "inactive_mem_bp", model.Direction.RAISES),
    ],
)
def test_lru_prio_raises_the_active_share_and_lru_deprio_the_inactive_one(
    action: str, metric: str, direction: model.Direction
) -> None:
    ctx = ContextConfig.model_validate(lru_ctx(action, {"metric": metric, "target_bp": 5000}))
    assert ctx.direction is direction
    assert workload.dest(ctx) == -1
    assert build_context(ctx).schemes[0].action is model.Action(action)


def member(raw: dict[str, Any], active_gib: int, inactive_gib: int) -> Member:
    """What a context tells the plan from a snapshot of the machine's LRU lists."""
    ctx = ContextConfig.model_validate(raw)
    memory = MemoryReadings({0: 64 * GiB}, {0: 0}, {}, active_gib * GiB, inactive_gib * GiB)
    eligible = {0: 16 * GiB, 1: 16 * GiB}
    snap = Snapshot(0.0, eligible, {0: 64 * GiB, 1: 64 * GiB}, SchemeStats(), 1, 1, True, memory)
    view = GoalReader().read(ctx, snap)
    return Member.of(
        ctx,
        deadband_bp=20,
        eligible_bytes=view.quantity,
        capacity_bytes=view.totals,
        inflight_bytes=0,
        time_s=0.0,
        movable_bytes=view.movable,
        reading=view.reading,
        unit_bytes=view.unit_bytes,
    )


def test_the_plan_steers_the_lru_balance_as_one_goal_moving_no_page_between_nodes() -> None:
    prio = lru_ctx(goal={"metric": "active_mem_bp", "target_bp": 5000}) | {"name": "prio"}
    deprio_goal = {"metric": "inactive_mem_bp", "target_bp": 7000}
    deprio = lru_ctx("lru_deprio", deprio_goal) | {"name": "deprio"}
    half = {"nid": 0, "target_bp": 5000}
    promote = {"name": "up", "node": 1, "scheme": {"target_nid": 0}, "goal": half}
    demote = {"name": "down", "node": 0, "scheme": {"target_nid": 1}, "goal": half}
    # 10 GiB active of 40 GiB of LRU memory: 2500 bp
    members = [member(c, 10, 30) for c in (prio, deprio)]
    (prio_m, deprio_m) = members
    assert prio_m.goal == deprio_m.goal  # inactive_mem_bp is active_mem_bp turned around
    assert (prio_m.raises, deprio_m.raises) == (True, False)
    result = plan(members)
    share = result.shares["prio"]
    assert share.value_bp == 2500 and share.gap_bytes == 10 * GiB  # 2500 bp of 40 GiB
    assert result.shares["deprio"].demand_bytes == 0  # 7500 bp inactive already: holds
    # the lru contexts move no page between nodes: no cycle with a pair that trades
    # pages between nodes 0 and 1 (that pair's own conflict aside)
    mixed = plan([*members, member(promote, 10, 30), member(demote, 10, 30)])
    assert all("prio" not in group and "deprio" not in group for group in mixed.conflicts)


def machine(rate: float) -> SimMachine:
    cfg = SimulationConfig(
        nodes=(SimNodeConfig(id=0, capacity_bytes=4 * GiB),),
        sets=(MemorySetConfig(name="a", bytes=2 * GiB, access_rate=rate, placement=0),),
        shifts=(),
    )
    return SimMachine(cfg)


def test_accessed_chunks_become_active_and_idle_ones_drift_inactive() -> None:
    idle = machine(0.0)
    for c in idle.chunks:
        c.active = True
    idle.advance_to(300.0)  # 300 scans, each deactivating an idle active chunk at 0.2 %
    share = sum(c.active for c in idle.chunks) / len(idle.chunks)
    expected = (1 - lru.DEACTIVATE_PER_SCAN) ** (300 / lru.SCAN_S)  # 0.55
    assert expected - 0.25 < share < expected + 0.25
    busy = machine(0.5)
    for c in busy.chunks:
        c.active = False
    busy.advance_to(10.0)
    assert all(c.active for c in busy.chunks)
    assert busy.memory().active_bytes == 2 * GiB


@pytest.mark.parametrize(("action", "active"), [("lru_prio", True), ("lru_deprio", False)])
def test_an_lru_scheme_puts_the_pages_it_acts_on_on_its_list(action: str, active: bool) -> None:
    m = machine(0.0)
    for c in m.chunks:
        c.active = not active
    pattern = {"nr_accesses_min": 0, "age_min": 0}
    ctx = ContextConfig.model_validate(lru_ctx(action, access_pattern=pattern))
    sim = m.add_scheme(build_context(ctx))
    sim.quota_bytes = 1 * GiB
    m.advance_to(1.5)  # one aggregation, one quota window
    assert sim.stats.sz_applied == 1 * GiB
    listed = m.memory().active_bytes if active else m.memory().inactive_bytes
    assert listed == 1 * GiB  # the quota's worth was put on the list, moving no page
    assert m.migrated_bytes == 0


def test_daemon_mode_steers_active_mem_bp_to_its_target_and_holds_it() -> None:
    settings = load_settings(SCENARIOS / "lru-active.toml", {"backend": "simulated"})
    result = asyncio.run(run_simulation(settings, 300.0))
    (ctx,) = result.contexts
    assert ctx.time_to_goal_s is not None and ctx.time_to_goal_s < 60
    assert abs(ctx.final_bp - ctx.target_bp) <= 60
    late = [v for t, v in result.history["lru"] if t >= 120]
    assert late and max(abs(v - 4000) for v in late) <= 80  # held, against the drift
    assert not ctx.held
    assert result.machine_migrated_bytes == 0  # no page left its node


async def test_sysfs_writes_the_lru_action_and_no_target_nid(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "7.2")
    c = lru_ctx()
    b = backend(m, k, tmp_path / "state", contexts=[c])
    await b.open()
    k.writes.clear()
    await b.start_context(build_context(ContextConfig.model_validate(c)))
    scheme = m.admin / "kdamonds/0/contexts/0/schemes/0"
    assert k.read(scheme / "action") == "lru_prio"
    assert not any(p.endswith("schemes/0/target_nid") for p, _ in k.writes)
    await b.close()
