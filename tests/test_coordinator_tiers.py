"""Memory tiers: from the configuration and from the kernel's memory tiers, and how
``damond check`` names them and the dead-band floor."""

from __future__ import annotations

import asyncio
from pathlib import Path

from damond.backend.simulated.backend import SimBackend
from damond.backend.sysfs.io import Session
from damond.backend.sysfs.topology import parse_nodelist, read_topology
from damond.config import GiB, Settings, SimNodeConfig, SimulationConfig
from damond.control.coordinator import Coordinator
from damond.control.tiers import Tiers
from damond.runtime.loop import ContextLoop
from tests.conftest import run_cli
from tests.fakedamon import make_machine
from tests.sysfs_support import backend


def test_tiers_name_promotions_and_demotions_along_a_chain() -> None:
    tiers = Tiers({0: 0, 1: 1, 2: 2, 3: 1})
    assert tiers.move(2, 1) == "promotion"
    assert tiers.move(1, 2) == "demotion"
    assert tiers.move(1, 3) == "move within tier 1"
    assert tiers.route(2, 0) == "node 2 (tier 2) -> node 0 (tier 0), a promotion"
    assert Tiers().route(2, 0) == "node 2 -> node 0, a move"


def test_simulated_nodes_take_their_configured_tier_or_their_rank() -> None:
    sim = SimulationConfig(
        nodes=(
            SimNodeConfig(id=0, capacity_bytes=GiB),
            SimNodeConfig(id=1, capacity_bytes=GiB, tier=1),
            SimNodeConfig(id=2, capacity_bytes=GiB, tier=1),
        )
    )
    assert Tiers.of_simulation(sim).tier_by_node == {0: 0, 1: 1, 2: 1}
    assert Tiers.of_simulation(SimulationConfig()).tier_by_node == {0: 0, 1: 1}


def test_node_lists_parse_as_the_kernel_writes_them() -> None:
    assert parse_nodelist("0\n") == [0]
    assert parse_nodelist("0-2,5") == [0, 1, 2, 5]
    assert parse_nodelist("\n") == []


def test_tiers_are_read_from_the_kernels_memory_tiers_and_ranked(tmp_path: Path) -> None:
    machine, kernel = make_machine(tmp_path, "7.2")
    tiering = machine.devices.parent / "virtual/memory_tiering"
    for name, nodes in (("memory_tier4", "0"), ("memory_tier22", "1"), ("memory_tier9", "")):
        (tiering / name).mkdir(parents=True)
        (tiering / name / "nodelist").write_text(nodes + "\n")
    topo = read_topology(Session(kernel, 1.0), machine.devices)
    assert topo.tier_by_node == {0: 0, 1: 1}  # DRAM, then CXL; an empty tier is no rank

    async def backend_tiers() -> dict[int, int]:  # what the daemon's coordinator uses
        sysfs = backend(machine, kernel, tmp_path / "state")
        await sysfs.open()
        try:
            return dict(await sysfs.tiers())
        finally:
            await sysfs.close()

    assert asyncio.run(backend_tiers()) == {0: 0, 1: 1}


def test_a_kernel_without_memory_tiers_leaves_them_unknown(tmp_path: Path) -> None:
    machine, kernel = make_machine(tmp_path, "7.2")
    assert read_topology(Session(kernel, 1.0), machine.devices).tier_by_node == {}


THREE_TIERS = """
[simulation]
nodes = [
  { id = 0, capacity_bytes = 17179869184, tier = 0 },
  { id = 1, capacity_bytes = 34359738368, tier = 1 },
  { id = 2, capacity_bytes = 68719476736, tier = 2 },
]
sets = [{ name = "hot", bytes = 12884901888, access_rate = 0.9 }]
shifts = []

[[contexts]]
name = "near"
node = 1
scheme = { target_nid = 0 }
goal = { nid = 0, target_bp = 6000 }

[[contexts]]
name = "far"
node = 2
scheme = { target_nid = 0 }
goal = { nid = 0, target_bp = 6000 }
controller = { deadband_bp = 0 }
"""


def test_check_names_tiers_shared_goals_and_a_raised_dead_band(tmp_path: Path) -> None:
    path = tmp_path / "damond.toml"
    path.write_text(THREE_TIERS)
    result = run_cli("check", "-c", str(path), timeout=30)
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert any(
        line.startswith("  far: node 2 (tier 2) -> node 0 (tier 0), a promotion of pages")
        for line in out
    )
    assert "  shared goal: near, far steer node_target_mem_bp of node 0 (tier 0) together" in (
        " ".join(out)
    )
    assert (
        "note: contexts[1].controller.deadband_bp: 0 bp is narrower than one measurement "
        "step (40 bp: a 67108864-byte region of node 0's 17179869184 bytes); raised to 40 bp"
    ) in out


def test_a_context_loop_shows_its_move_between_tiers() -> None:
    settings = Settings(backend="simulated")
    backend = SimBackend(settings.simulation, settings.contexts, lambda: 0.0)
    coordinator = Coordinator(1.0, Tiers.of_simulation(settings.simulation))
    loops = [ContextLoop(ctx, backend, coordinator, 1.0) for ctx in settings.contexts]

    async def one_iteration() -> None:
        await backend.open()
        for loop in loops:
            await loop.setup()
            await loop.step()
        await backend.close()

    asyncio.run(one_iteration())
    assert {loop.cfg.name: loop.status.move for loop in loops} == {
        "node0": "demotion",  # DRAM -> CXL
        "node1": "promotion",
    }
