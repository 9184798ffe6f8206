"""``damond simulate``: the real context loops against the simulator, in virtual time.

The loops, controller and backend are the daemon's own; only the clock differs,
so an hour of simulated time takes seconds.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from damond.backend.simulated.backend import SimBackend
from damond.config import Settings
from damond.control.arbiter import GoalArbiter
from damond.runtime.loop import ContextLoop

BAND_BP = 100


@dataclass(frozen=True)
class ContextResult:
    name: str
    goal_metric: str
    node: int
    target_bp: int
    final_bp: int
    time_to_goal_s: float | None
    overshoot_bp: int
    migrated_bytes: int
    pingpong_bytes: int


@dataclass(frozen=True)
class SimulationResult:
    duration_s: float
    contexts: list[ContextResult]
    history: dict[str, list[tuple[float, int]]]
    machine_migrated_bytes: int
    machine_pingpong_bytes: int

    def to_json(self) -> dict[str, object]:
        return {"duration_s": self.duration_s, "contexts": [asdict(c) for c in self.contexts]}


class _VirtualClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t


def time_to_goal(
    history: list[tuple[float, int]], target: int, band: int = BAND_BP
) -> float | None:
    """The time from which the value stays within ``band`` of ``target`` to the end."""
    if not history or abs(history[-1][1] - target) > band:
        return None
    for i in range(len(history) - 1, -1, -1):
        if abs(history[i][1] - target) > band:
            return history[i + 1][0]
    return history[0][0]


SETTLED_SAMPLES = 10


def overshoot(history: list[tuple[float, int]], target: int, band: int = BAND_BP) -> int:
    """The furthest the value went past the target after reaching it while settling.

    An episode starts when the value leaves the band on one side and ends once
    it has stayed in the band for ``SETTLED_SAMPLES`` samples. Once the value
    has come back into the band, a value on the other side of the target is
    overshoot. A jump straight across (a shift of the hot set) starts a new
    episode instead.
    """
    side = 0
    entered = False
    settled = 0
    worst = 0
    for _, value in history:
        error = value - target
        if side and entered and error * side < 0:
            worst = max(worst, abs(error))
        if abs(error) > band:
            if not (side and entered and error * side < 0):
                side, entered = (1 if error > 0 else -1), False
            settled = 0
        else:
            entered = True
            settled += 1
            if settled >= SETTLED_SAMPLES:
                side = 0
    return worst


async def run_simulation(settings: Settings, duration_s: float) -> SimulationResult:
    clock = _VirtualClock()
    backend = SimBackend(settings.simulation, settings.contexts, clock.now)
    interval = settings.interval_s
    arbiter = GoalArbiter(stale_after_s=3 * interval)
    loops = [
        ContextLoop(ctx, backend, arbiter, interval, record_history=True)
        for ctx in settings.contexts
    ]
    await backend.open()
    for loop in loops:
        await loop.setup()
    steps = int(duration_s / interval)
    for i in range(steps + 1):
        clock.t = i * interval
        for loop in loops:
            await loop.step()
    machine = backend.machine
    results = []
    for loop in loops:
        ctx = loop.cfg
        hist = loop.status.history
        scheme = machine.schemes[ctx.name]
        results.append(
            ContextResult(
                name=ctx.name,
                goal_metric=ctx.goal.metric,
                node=ctx.goal.nid,
                target_bp=ctx.goal.target_bp,
                final_bp=hist[-1][1],
                time_to_goal_s=time_to_goal(hist, ctx.goal.target_bp),
                overshoot_bp=overshoot(hist, ctx.goal.target_bp),
                migrated_bytes=scheme.stats.sz_applied,
                pingpong_bytes=scheme.pingpong_bytes,
            )
        )
    await backend.close()
    return SimulationResult(
        duration_s=duration_s,
        contexts=results,
        history={loop.cfg.name: loop.status.history for loop in loops},
        machine_migrated_bytes=machine.migrated_bytes,
        machine_pingpong_bytes=machine.pingpong_bytes,
    )


def format_summary(result: SimulationResult) -> str:
    header = (
        f"{'context':<12} {'metric':<22} {'node':>4} {'target':>7} {'final':>7} "
        f"{'to goal':>9} {'overshoot':>9} {'migrated':>12} {'ping-pong':>12}"
    )
    lines = [f"simulated {result.duration_s:.0f} s", header]
    for c in result.contexts:
        ttg = "never" if c.time_to_goal_s is None else f"{c.time_to_goal_s:.0f} s"
        lines.append(
            f"{c.name:<12} {c.goal_metric:<22} {c.node:>4} {c.target_bp:>7} {c.final_bp:>7} "
            f"{ttg:>9} {c.overshoot_bp:>9} {_mib(c.migrated_bytes):>12} "
            f"{_mib(c.pingpong_bytes):>12}"
        )
    lines.append("(basis points; time to goal: from when the metric stays within ±100 bp)")
    return "\n".join(lines)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB"


def write_json(result: SimulationResult, path: Path) -> None:
    path.write_text(json.dumps(result.to_json(), indent=2) + "\n")


class PlotUnavailable(Exception):
    pass


def write_plot(result: SimulationResult, path: Path) -> None:
    """A PNG of each context's metric and target over simulated time."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib: install it with  pip install 'damond[plot]'"
        ) from None
    fig, axes = plt.subplots(
        len(result.contexts), 1, figsize=(10, 3 * len(result.contexts)), squeeze=False, sharex=True
    )
    for ax, ctx in zip(axes[:, 0], result.contexts, strict=True):
        hist = result.history[ctx.name]
        ax.plot([t for t, _ in hist], [v for _, v in hist], label=f"{ctx.goal_metric}")
        ax.axhline(ctx.target_bp, color="red", linestyle="--", label="target")
        ax.axhspan(ctx.target_bp - BAND_BP, ctx.target_bp + BAND_BP, color="red", alpha=0.1)
        ax.set_title(f"{ctx.name}: node {ctx.node}")
        ax.set_ylabel("basis points")
        ax.legend(loc="best")
    axes[-1, 0].set_xlabel("simulated time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
