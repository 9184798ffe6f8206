"""The scenario library (``benchmarks/scenarios``) and the oracle that judges runs of it."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from damond.config import GiB
from damond.simulation.run import run_simulation

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "benchmarks" / "scenarios").glob("*.toml"))


def load_modes() -> ModuleType:
    spec = importlib.util.spec_from_file_location("modes", ROOT / "benchmarks" / "modes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["modes"] = module
    spec.loader.exec_module(module)
    return module


modes = load_modes()


def test_the_library_covers_at_least_twelve_scenarios() -> None:
    assert len(SCENARIOS) >= 12


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_scenario_validates_describes_itself_and_runs(path: Path) -> None:
    settings = modes.load_scenario(path)
    assert len(settings.simulation.description) > 40
    result = asyncio.run(run_simulation(settings, 30.0))
    assert result.description == settings.simulation.description
    assert [c.name for c in result.contexts] == [c.name for c in settings.contexts]


CYCLE_RATE = (512 << 20) / 1.5
"""The fastest a default scheme moves: 512 MiB per aggregation of 1 s and their 0.5 s
of migration at the simulator's 1 GiB/s."""


def oracle_of(name: str, duration_s: float = 5.0) -> list[Any]:
    """The oracle's phases (``modes.PhaseOracle``) of a short run of scenario ``name``."""
    settings = modes.load_scenario(ROOT / "benchmarks" / "scenarios" / f"{name}.toml")
    result = asyncio.run(run_simulation(settings, duration_s))
    phases: list[Any] = modes.oracle(settings, result)
    return phases


def test_the_oracle_counts_the_seeds_two_goals_as_one_move() -> None:
    """Node 0 holds 14 GiB of hot memory for a target of 12 GiB and node 1 14 GiB for 16:
    the same 2 GiB serve both goals."""
    (phase,) = oracle_of("seed-default")
    assert phase.feasible
    assert abs(phase.min_bytes - 2 * GiB) <= 64 << 20
    # 4 s to see the hot memory, 2 GiB at 512 MiB a kdamond cycle (an aggregation,
    # then half a second migrating them at 1 GiB/s), 4 s to see it moved
    assert phase.bound_s == pytest.approx(8.0 + phase.min_bytes / CYCLE_RATE)


def test_the_oracle_counts_each_hop_of_a_chain() -> None:
    """Far CXL must drop to 0.3 GiB of 6 GiB and DRAM rise to 3.6 GiB: 2.6 GiB climb two
    hops, the other 2.1 GiB one."""
    (phase,) = oracle_of("three-tier-chain")
    assert phase.feasible
    assert phase.min_bytes == pytest.approx(2.6 * 2 * GiB + 2.1 * GiB, rel=0.02)
    # seen once at the start and once after each of the two hops
    assert phase.bound_s == pytest.approx(3 * 4.0 + phase.min_bytes / CYCLE_RATE)


def test_the_oracle_shares_one_gap_between_two_promoters() -> None:
    (phase,) = oracle_of("three-node-shared-goal")
    assert phase.min_bytes == pytest.approx(3.2 * GiB, rel=0.02)
    assert phase.bands["promote-cxl1"] == (6900, 7600)


def test_the_oracle_finds_infeasible_goals_and_goals_that_always_hold() -> None:
    assert not oracle_of("infeasible-pair")[0].feasible
    (hold,) = oracle_of("targets-extreme-hold")
    assert hold.feasible and hold.min_bytes == 0
    (nothing,) = oracle_of("no-hot-memory")
    assert nothing.feasible and nothing.min_bytes == 0


def test_phases_follow_events_shifts_and_set_sizes() -> None:
    changes = oracle_of("target-changes", 3600.0)
    labels = [p.label for p in changes]
    # a new target is seen at once: the bound has the lag of the moved pages only
    assert changes[1].bound_s == pytest.approx(4.0 + changes[1].min_bytes / CYCLE_RATE)
    assert labels == [
        "start",
        "node0 target 5000 bp; node1 target 4500 bp",
        "node0 target 6000 bp; node1 target 4000 bp",
    ]
    grow = oracle_of("growing-hot-set", 3600.0)
    assert [p.start_s for p in grow] == [0.0, 1200.0, 2400.0]
