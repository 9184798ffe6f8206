"""The simulator against the real kernel, on one scenario: does the simulator tell the truth?

Runs tests/vm/calibrate_scenario.py (the VM suite's daemon mode: two 1 GiB nodes,
64 MiB hot on node 0 and 256 MiB on node 1, one pull context holding 6000 bp of it on
node 0) on Debian's Linux 7.2 in QEMU when qemu and the kernel are there, and the same
configuration in the simulator, and prints the figures side by side with their ratio
and whether they agree within 25 %; then benchmarks/peer.py's damond-vs-damo table.

TCG runs the guest slower than hardware. The guest's speed is measured (the kdamond's
sampling interval from its sleeps, damond's iteration interval, each workload's touch
period) and the simulator runs at it: its sampling interval is the achieved one, its
loop steps as often as the guest's, and a hot set's access rate per sample is the
sampling interval over its workload's touch period. The guest's figures are not rescaled.

Usage: python benchmarks/calibrate.py [--no-guest] [--guest-json FILE] [--guest-runs N]
[--no-peer] [--peer-json FILE] [--run-s S] [--seeds N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.vm: the guest's scenario is the one source of truth

from calibration_figures import (  # noqa: E402
    AGREE,
    POLL_S,
    ROWS,
    Run,
    agree,
    figures,
    median_figures,
)

from damond.backend.simulated.backend import SimBackend  # noqa: E402
from damond.config import Settings, load_settings  # noqa: E402
from damond.control.coordinator import Coordinator  # noqa: E402
from damond.control.tiers import Tiers  # noqa: E402
from damond.runtime.logs import configure_logging  # noqa: E402
from damond.runtime.loop import ContextLoop  # noqa: E402
from tests import vmguest  # noqa: E402
from tests.vm import calibrate_scenario as scenario  # noqa: E402
from tests.vm import guest_scenario as gs  # noqa: E402

SUITE = "sid"
MiB = 1 << 20
NODE_MIB = (1024, 1024)
SAMPLES_PER_AGGR = 20
"""The scenario's 100 ms aggregations over its 5 ms samples."""
CHUNK_MIB = 1
TCG_SETTLE_S = 2.0
"""Under TCG, migrated pages read as accessed at their destination only about 2 s later
(the VM suite's ``lag_s``); the simulator's default is one hardware sampling interval."""
BUSY0_MIB = 24
IDLE0_MIB = 256
PAGE = 4096
SEEDS = 5
STARVED = 0.1
"""A guest whose workloads stalled for longer than this share of the time was starved."""

README_GUEST = Path(__file__).with_name("calibration-guest-7.2.json")
"""The three guest runs of the README's table (Linux 7.2 under TCG on a 2-core machine
shared with other jobs): their speeds are the simulator's when no guest runs."""


# --- the guest ---------------------------------------------------------------


def run_guest(run_s: float) -> dict[str, Any]:
    out = ROOT / ".vm" / f"calibrate-{SUITE}.json"
    out.parent.mkdir(exist_ok=True)
    out.unlink(missing_ok=True)
    script = f"{sys.executable} -m tests.vm.calibrate_scenario {out} {run_s:g}\n"
    result = vmguest.run_in_guest(
        SUITE, ROOT, script, timeout_s=run_s + scenario.STARTUP_S + 120, node_mem_mib=NODE_MIB
    )
    if not out.exists():
        raise RuntimeError(f"no guest result:\n{result.out[-2000:]}\n{result.console[-2000:]}")
    data: dict[str, Any] = json.loads(out.read_text())
    data["guest_wall_s"] = round(result.wall_s, 1)
    return data


def guest_run(data: dict[str, Any]) -> Run:
    return Run(
        metric=[(it["t"], it["metric_bp"]) for it in data["iterations"] if it["metric_bp"]],
        moved=[(t, pages * PAGE) for t, pages in data["moves_pages"]],
    )


def guest_speed(data: dict[str, Any]) -> dict[str, float]:
    """The achieved sampling interval (the kdamond sleeps once per sample; the configured
    one if unknown), damond's iteration interval and each hot workload's touch period."""
    speed = {"sample_s": 0.005, "iteration_s": 1.0, "first_s": 0.0}
    sleeps = data.get("kdamond_sleeps", [])
    if len(sleeps) >= 2 and sleeps[-1][1] > sleeps[0][1]:
        speed["sample_s"] = (sleeps[-1][0] - sleeps[0][0]) / (sleeps[-1][1] - sleeps[0][1])
    for node, _ in scenario.HOT:
        touch = data.get("touch", {}).get(f"hot{node}")
        if not touch:
            raise ValueError(f"guest result: touch.hot{node}: the workload never reported")
        speed[f"hot{node}"] = touch["period_s"]
    its = [it["t"] for it in data["iterations"]]
    if len(its) >= 2:
        speed["iteration_s"] = (its[-1] - its[0]) / (len(its) - 1)
    if its:
        speed["first_s"] = its[0]
    return speed


# --- the simulator -----------------------------------------------------------


def sim_settings(speed: dict[str, float], seed: int) -> Settings:
    """The guest's own configuration on the simulated backend, with the guest's nodes
    and workloads and, where TCG is slower than configured, the guest's speed."""
    text = gs.config("daemon", scenario.TARGET_BP).replace(
        'backend = "sysfs"', 'backend = "simulated"'
    )
    sample_us = max(5000, round(speed["sample_s"] * 1e6))
    text = text.replace(
        "sample_us = 5000, aggr_us = 100000",
        f"sample_us = {sample_us}, aggr_us = {sample_us * SAMPLES_PER_AGGR}",
    )

    def rate(node: int) -> float:
        """The chance that one sample sees a page of workload ``node`` touched."""
        return min(1.0, speed["sample_s"] / speed[f"hot{node}"])

    nodes = ", ".join(
        f"{{ id = {i}, capacity_bytes = {mib * MiB} }}" for i, mib in enumerate(NODE_MIB)
    )
    sets = [
        f'{{ name = "hot{node}", bytes = {mib * MiB}, access_rate = {rate(node):.4f}, '
        f"placement = {node} }}"
        for node, mib in scenario.HOT
    ]
    # the rest of the guest's node 0: what the kernel, damond and the page cache touch
    # (the guest's first reading, 2500 bp rather than the workloads' 2000, puts about
    # 24 MiB of it in the access pattern) and what they leave idle
    sets.append(
        f'{{ name = "busy0", bytes = {BUSY0_MIB * MiB}, access_rate = {rate(1):.4f}, '
        "placement = 0 }"
    )
    sets.append(
        f'{{ name = "idle0", bytes = {IDLE0_MIB * MiB}, access_rate = 0.0, placement = 0 }}'
    )
    # the simulated kdamond's regions and damond's reading of them as the guest's [sysfs]
    # sets them on the real one
    sysfs = _load(text).sysfs
    return _load(
        text
        + f"""
[simulation]
description = "The calibration scenario of benchmarks/calibrate.py (the VM suite's daemon mode)."
seed = {seed}
chunk_bytes = {CHUNK_MIB * MiB}
nr_regions_min = {sysfs.nr_regions_min}
nr_regions_max = {sysfs.nr_regions_max}
measure_window_s = {sysfs.measure_window_s}
migration_settle_s = {TCG_SETTLE_S}
nodes = [ {nodes} ]
sets = [ {", ".join(sets)} ]
shifts = []
"""
    )


def _load(text: str) -> Settings:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "calibration.toml"
        path.write_text(text)
        return load_settings(path)


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t


async def _simulate(settings: Settings, run_s: float, every_s: float, first_s: float) -> Run:
    """damond's own loop on the simulated machine, an iteration every ``every_s`` (the
    guest's achieved interval; the loop still believes in its configured one), with the
    migrations read every :data:`POLL_S` (as the guest polls its counter)."""
    clock = _Clock()
    (ctx,) = settings.contexts
    backend = SimBackend(settings.simulation, settings.contexts, clock.now)
    coordinator = Coordinator(settings.interval_s, Tiers.of_simulation(settings.simulation))
    loop = ContextLoop(ctx, backend, coordinator, settings.interval_s, record_history=False)
    await backend.open()
    await loop.setup()
    metric: list[tuple[float, int]] = []
    moved: list[tuple[float, int]] = []
    next_step = first_s
    for k in range(int(run_s / POLL_S) + 1):
        clock.t = k * POLL_S
        backend.machine.advance_to(clock.t)
        moved.append((round(clock.t, 3), backend.tiering_counters()["numa_pages_migrated"] * PAGE))
        if clock.t >= next_step - 1e-9:
            await loop.step()
            next_step += every_s
            if loop.status.metric_bp:
                metric.append((round(clock.t, 3), loop.status.metric_bp))
    await backend.close()
    return Run(metric, moved)


def run_sim(speed: dict[str, float], seed: int, run_s: float) -> Run:
    settings = sim_settings(speed, seed)
    return asyncio.run(_simulate(settings, run_s, speed["iteration_s"], speed["first_s"]))


# --- the table ---------------------------------------------------------------


def table(guest: dict[str, float | None] | None, sim: dict[str, float | None]) -> list[str]:
    def cell(value: float | None) -> str:
        return "never" if value is None else f"{value:.1f}"

    lines = [f"| figure | kernel 7.2 (guest) | simulator | sim/kernel | within {AGREE:.0%} |"]
    lines.append("|---|---:|---:|---:|---|")
    for row in ROWS:
        s = sim[row.name]
        if guest is None:
            lines.append(f"| {row.name} ({row.unit}) | not run | {cell(s)} | | |")
            continue
        g = guest[row.name]
        ratio = f"{s / g:.2f}" if g and s is not None else "-"
        verdict = "yes" if agree(row, g, s) else "NO"
        lines.append(f"| {row.name} ({row.unit}) | {cell(g)} | {cell(s)} | {ratio} | {verdict} |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-guest", action="store_true", help="the simulator's side only")
    parser.add_argument(
        "--guest-json",
        type=Path,
        help="guest results to reuse instead of booting (one run, or a list of runs)",
    )
    parser.add_argument("--guest-runs", type=int, default=1, help="guest boots, medians compared")
    parser.add_argument(
        "--no-peer", action="store_true", help="without the damond-vs-damo table (a second boot)"
    )
    parser.add_argument(
        "--peer-json", type=Path, help="a benchmarks/peer.py result to reuse instead of booting"
    )
    parser.add_argument("--run-s", type=float, default=120.0, help="seconds after kdamond on")
    parser.add_argument(
        "--seeds", type=int, default=SEEDS, help="simulator runs per guest run (seeds 1..N)"
    )
    args = parser.parse_args(argv)
    for flag, value in (("--seeds", args.seeds), ("--guest-runs", args.guest_runs)):
        if value < 1:
            parser.error(f"{flag}: must be at least 1, got {value}")
    if not 60 <= args.run_s <= 3600:
        parser.error(
            f"--run-s: must be 60 to 3600 s (a steady minute at least), got {args.run_s:g}"
        )
    configure_logging("error", sys.stderr)
    guests = load_guests(args.guest_json, 0 if args.no_guest else args.guest_runs, args.run_s)
    speeds = [guest_speed(g) for g in guests or _runs(README_GUEST)]
    origin = f"measured in {len(guests)} guest run(s)" if guests else "of the README's guest runs"
    for speed in speeds:
        periods = ", ".join(f"{k} every {speed[k] * 1e3:.0f} ms" for k in ("hot0", "hot1"))
        print(
            f"guest speed ({origin}): kdamond sampling interval {speed['sample_s'] * 1e3:.1f} "
            f"ms (configured 5), damond iteration {speed['iteration_s']:.2f} s (configured "
            f"1), hot pages touched: {periods}"
        )
    print(
        "the simulator runs at each guest's speed (TCG is slower than hardware); nothing of "
        f"the guest's figures is rescaled; the medians of {args.seeds} seeds per guest run"
    )
    target = scenario.TARGET_BP
    sims = [run_sim(sp, seed, args.run_s) for sp in speeds for seed in range(1, args.seeds + 1)]
    sim = median_figures([figures(r, target) for r in sims])
    guest = median_figures([figures(guest_run(g), target) for g in guests]) if guests else None
    for g in guests:
        print(f"guest kernel {g['kernel']}, damond start-up {g.get('startup_s')} s")
        starved(g)
    print("\n".join(table(guest, sim)))
    if not args.no_peer:
        print_peer(args.peer_json, booted=bool(guests) and args.guest_json is None)
    return 0


def _runs(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text())
    return data if isinstance(data, list) else [data]


def load_guests(path: Path | None, boots: int, run_s: float) -> list[dict[str, Any]]:
    """The guest runs that worked: read from ``path``, or ``boots`` fresh ones."""
    if path is not None:
        found = _runs(path)
    elif boots and (why := vmguest.missing_requirements(SUITE)):
        print(f"guest not run: {why}")
        found = []
    else:
        found = []
        for _ in range(boots):
            print(f"booting Linux 7.2 under QEMU for {run_s:g} s of the scenario ...")
            try:
                found.append(run_guest(run_s))
            except RuntimeError as exc:
                print(f"the guest run failed: {exc}")
    for g in found:
        if "error" in g:
            print(f"the guest run failed: {g['error']}")
    return [g for g in found if "error" not in g]


def starved(guest: dict[str, Any]) -> None:
    """Say how long the guest's workloads went without touching their pages."""
    stalled = {
        k: t["stalled_share"] for k, t in guest["touch"].items() if t and "stalled_share" in t
    }
    if stalled:
        shares = ", ".join(f"{k} {v:.0%}" for k, v in stalled.items())
        print(
            "share of time the guest's workloads went without touching their pages "
            f"for longer than an aggregation (starved of CPU): {shares}"
        )
    if max(stalled.values(), default=0.0) > STARVED:
        print(
            f"WARNING: over {STARVED:.0%} starved: the host was loaded, and the kernel's "
            "figures measure that load (pages of a starved workload look cold for whole "
            "aggregations), which the simulator does not model; run on a quiet host"
        )


def print_peer(path: Path | None, booted: bool) -> None:
    """The damond-vs-damo table of benchmarks/peer.py: from ``path``, or from a second
    boot when this run booted a guest."""
    import peer

    if path is not None:
        result = json.loads(path.read_text())
    elif booted:
        print("\nbooting Linux 7.2 again for damond against the kernel's tuner (damo) ...")
        result = peer.run()
    else:
        print("\ndamond vs damo: not run (it needs the guest; or pass --peer-json FILE)")
        return
    print("\ndamond against the kernel's own quota-goal tuning started by damo:")
    print(peer.table(result))


if __name__ == "__main__":
    sys.exit(main())
