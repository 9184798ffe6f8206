"""Controller modes side by side on the seed's two-context scenario.

Runs the embedded default (the seed RFC's goals on the simulated machine) for
an hour of simulated time under damond's own controller and under the
kernel's two tuners, fed the seed's literal metric (what the RFC proposed) and
fed direction-corrected values (what damond's ``kernel`` mode does). Then an
infeasible goal set (see :func:`infeasible`).

Usage: python benchmarks/modes.py [--duration S] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass

from damond.config import (
    GiB,
    KernelFeed,
    MemorySetConfig,
    Mode,
    Settings,
    load_settings,
)
from damond.model.damon import GoalTuner
from damond.runtime.logs import configure_logging
from damond.simulation.run import SimulationResult, run_simulation
from damond.simulation.scoring import time_to_goal


@dataclass(frozen=True)
class Variant:
    label: str
    mode: Mode
    tuner: GoalTuner = GoalTuner.CONSIST
    feed: KernelFeed = KernelFeed.CORRECTED


VARIANTS = (
    Variant("daemon", Mode.DAEMON),
    Variant("kernel consist (seed, literal)", Mode.KERNEL, GoalTuner.CONSIST, KernelFeed.LITERAL),
    Variant("kernel temporal (seed, literal)", Mode.KERNEL, GoalTuner.TEMPORAL, KernelFeed.LITERAL),
    Variant("kernel consist (corrected)", Mode.KERNEL, GoalTuner.CONSIST),
    Variant("kernel temporal (corrected)", Mode.KERNEL, GoalTuner.TEMPORAL),
)


def with_variant(base: Settings, v: Variant) -> Settings:
    contexts = tuple(
        c.model_copy(
            update={
                "mode": v.mode,
                "controller": c.controller.model_copy(
                    update={"tuner": v.tuner, "kernel_feed": v.feed}
                ),
            }
        )
        for c in base.contexts
    )
    return base.model_copy(update={"contexts": contexts})


def infeasible(base: Settings) -> Settings:
    """34 GiB of hot memory, all on node 1 at the start, 4 GiB idle on node 0.

    60 % of node 0 (12 GiB) plus 40 % of node 1 (16 GiB) holds only 28 GiB of
    hot memory, so once node 1 has pushed enough into node 0, both nodes are
    above target and every move that helps one goal hurts the other.
    """
    sim = base.simulation
    sets = (
        MemorySetConfig(name="hot", bytes=34 * GiB, access_rate=0.9, placement=1),
        MemorySetConfig(name="idle", bytes=4 * GiB, access_rate=0.0, placement=0),
    )
    return base.model_copy(
        update={"simulation": sim.model_copy(update={"sets": sets, "shifts": ()})}
    )


def phase_times(r: SimulationResult, shift_s: float) -> tuple[float | None, float | None]:
    """Time to goal before the hot set shifts, and settling time after it (worst context)."""
    before: list[float | None] = []
    after: list[float | None] = []
    for c in r.contexts:
        hist = r.history[c.name]
        before.append(time_to_goal([h for h in hist if h[0] < shift_s], c.target_bp))
        settle = time_to_goal([h for h in hist if h[0] >= shift_s], c.target_bp)
        after.append(None if settle is None else settle - shift_s)
    return _worst(before), _worst(after)


def _worst(times: list[float | None]) -> float | None:
    return None if any(t is None for t in times) else max(t for t in times if t is not None)


def fmt_time(t: float | None) -> str:
    return "never" if t is None else f"{t:.0f}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "n/a"
    if b == 0:
        return "n/a" if a == 0 else "inf"
    return f"{a / b:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=3600.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    configure_logging("error", sys.stderr)
    base = load_settings(None, {"simulation": {"seed": args.seed}})
    mib = 1 << 20

    print(f"Seed scenario, {args.duration:.0f} s simulated, seed {args.seed}")
    print(
        f"{'mode':<34} {'context':<7} {'target':>6} {'final':>6} {'to goal s':>9} "
        f"{'overshoot':>9} {'migrated MiB':>12} {'ping-pong MiB':>13}"
    )
    results: dict[str, SimulationResult] = {}
    for v in VARIANTS:
        r = asyncio.run(run_simulation(with_variant(base, v), args.duration))
        results[v.label] = r
        for c in r.contexts:
            print(
                f"{v.label:<34} {c.name:<7} {c.target_bp:>6} {c.final_bp:>6} "
                f"{fmt_time(c.time_to_goal_s):>9} {c.overshoot_bp:>9} "
                f"{c.migrated_bytes / mib:>12.0f} {c.pingpong_bytes / mib:>13.0f}"
            )

    shift_s = min((sh.at_s for sh in base.simulation.shifts), default=args.duration)
    print(
        "\nWhole scenario (worst context; 'to goal' from the start, 'settle' after the hot set "
        f"shifts at {shift_s:.0f} s)"
    )
    print(
        f"{'mode':<34} {'to goal s':>9} {'settle s':>9} {'overshoot':>9} {'migrated MiB':>12} "
        f"{'ping-pong MiB':>13}"
    )
    summary: dict[str, tuple[float | None, float | None, int, int, int]] = {}
    for label, r in results.items():
        before, after = phase_times(r, shift_s)
        over = max(c.overshoot_bp for c in r.contexts)
        mig = sum(c.migrated_bytes for c in r.contexts)
        pp = sum(c.pingpong_bytes for c in r.contexts)
        summary[label] = (before, after, over, mig, pp)
        print(
            f"{label:<34} {fmt_time(before):>9} {fmt_time(after):>9} {over:>9} "
            f"{mig / mib:>12.0f} {pp / mib:>13.0f}"
        )
    print("\nRatio damond daemon / kernel tuner (n/a: the tuner never reached the goal)")
    print(
        f"{'mode':<34} {'to goal':>9} {'settle':>9} {'overshoot':>9} {'migrated':>12} "
        f"{'ping-pong':>13}"
    )
    d = summary["daemon"]
    for label, k in summary.items():
        if label == "daemon":
            continue
        cells = [ratio(a, b) for a, b in zip(d, k, strict=True)]
        if k[0] is None:
            cells[2] = "n/a"  # overshoot means nothing for a tuner that never got there
        print(
            f"{label:<34} {cells[0]:>9} {cells[1]:>9} {cells[2]:>9} {cells[3]:>12} {cells[4]:>13}"
        )

    cfg = infeasible(base)
    r = asyncio.run(run_simulation(cfg, args.duration))
    capacity = min(n.capacity_bytes for n in cfg.simulation.nodes)
    print("\nInfeasible goal set (34 GiB hot; the targets have room for 28 GiB), daemon mode")
    for c in r.contexts:
        print(
            f"  {c.name}: target {c.target_bp} final {c.final_bp} "
            f"migrated {c.migrated_bytes / mib:.0f} MiB ping-pong {c.pingpong_bytes / mib:.0f} MiB"
        )
    pp = r.machine_pingpong_bytes
    print(
        f"  ping-pong {pp / mib:.0f} MiB = {100 * pp / capacity:.2f} % of the smaller node's "
        f"capacity ({capacity / mib:.0f} MiB) over {args.duration:.0f} s"
    )


if __name__ == "__main__":
    main()
