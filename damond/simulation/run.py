"""``damond simulate``: the real context loops against the simulator, in virtual time.

The loops, controller and backend are the daemon's own; only the clock differs,
so an hour of simulated time takes seconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from damond.backend.simulated.backend import SimBackend
from damond.config import Settings
from damond.control.arbiter import GoalArbiter
from damond.runtime.loop import ContextLoop
from damond.simulation.scoring import overshoot, time_to_goal


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
