"""``damond simulate``: the real context loops against the simulator, in virtual time.

The loops, controller and backend are the daemon's own; only the clock differs,
so an hour of simulated time takes seconds. Scheduled goal changes reach a
context the way a pushed policy does: the policy's field is written into the
context's configuration, which the loop takes online.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

import structlog

from damond.backend.simulated.backend import SimBackend
from damond.backend.simulated.machine import SimMachine
from damond.config import ConfigError, ContextConfig, Settings
from damond.config.simulation import GoalEventConfig
from damond.control.coordinator import Coordinator
from damond.control.goalmetric import goal_value_bp
from damond.control.tiers import Tiers
from damond.control.workload import SHARE_METRICS
from damond.policy.merge import FIELDS
from damond.runtime.loop import ContextLoop
from damond.simulation.progress import ProgressLine
from damond.simulation.record import (
    PhaseMark,
    Series,
    SimWarning,
    mark,
    recording_warnings,
)
from damond.simulation.scoring import band_of, churn_bytes, phase_overshoot, time_to_goal

Progress = Callable[[float, float], None]
"""Told ``(simulated seconds done, simulated seconds in all)`` now and then."""

PROGRESS_EVERY = 64
"""Iterations between two progress reports."""

TARGET_FIELD = next(f for f in FIELDS if f.name == "target_bp")

log = structlog.get_logger("damond.simulation")


@dataclass(frozen=True)
class ContextResult:
    name: str
    goal_metric: str
    node: int
    target_bp: int
    """The target in force at the end (scheduled events may have changed it)."""
    final_bp: int
    time_to_goal_s: float | None
    overshoot_bp: int
    migrated_bytes: int
    pingpong_bytes: int
    held: bool
    """Whether the context was held still at the end."""
    held_reason: str | None
    held_s: float
    """Simulated seconds the context spent held still."""
    series: Series = field(repr=False)
    warnings: list[SimWarning] = field(repr=False)

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "goal_metric": self.goal_metric,
            "node": self.node,
            "target_bp": self.target_bp,
            "final_bp": self.final_bp,
            "time_to_goal_s": self.time_to_goal_s,
            "overshoot_bp": self.overshoot_bp,
            "migrated_bytes": self.migrated_bytes,
            "pingpong_bytes": self.pingpong_bytes,
            "held": self.held,
            "held_reason": self.held_reason,
            "held_s": self.held_s,
            "warnings": [w.to_json() for w in self.warnings],
            "series": self.series.to_json(),
        }


@dataclass(frozen=True)
class SimulationResult:
    duration_s: float
    seed: int
    description: str
    contexts: list[ContextResult]
    marks: list[PhaseMark]
    """The machine at the start, at every scheduled change that happened, and at the end."""
    warnings: list[SimWarning]
    """Every warning of the run, the contexts' and the coordinator's."""
    machine_migrated_bytes: int
    machine_pingpong_bytes: int
    churn_bytes: int
    """Bytes moved against the net change (:func:`~damond.simulation.scoring.churn_bytes`)."""

    @property
    def history(self) -> dict[str, list[tuple[float, int]]]:
        """Per context, ``(t_s, value_bp)`` of the iterations that measured something."""
        return {c.name: c.series.measured_points() for c in self.contexts}

    @property
    def churn_bytes_per_hour(self) -> float:
        return self.churn_bytes * 3600 / self.duration_s if self.duration_s > 0 else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "description": self.description,
            "duration_s": self.duration_s,
            "migrated_bytes": self.machine_migrated_bytes,
            "pingpong_bytes": self.machine_pingpong_bytes,
            "churn_bytes": self.churn_bytes,
            "churn_bytes_per_hour": round(self.churn_bytes_per_hour),
            "phases": [{"t_s": m.t_s, "label": m.label} for m in self.marks],
            "warnings": [w.to_json() for w in self.warnings],
            "contexts": [c.to_json() for c in self.contexts],
        }


class _VirtualClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t


def scheduled_changes(settings: Settings) -> list[tuple[float, str, bool]]:
    """``(at_s, label, workload)`` of every scheduled change; ``workload``: of the memory
    (a shift or a set's size), which monitoring sees only once it has aged, rather
    than of a goal."""
    sim = settings.simulation
    changes = [
        (s.at_s, f"shift {s.fraction:.0%} of {s.from_set} to {s.to_set}", True) for s in sim.shifts
    ]
    changes += [
        (p.at_s, f"set {p.set} to {p.bytes / (1 << 30):.3g} GiB", True) for p in sim.set_phases
    ]
    changes += [(e.at_s, f"{e.context} target {e.target_bp} bp", False) for e in sim.goal_events]
    return sorted(changes)


MAX_DURATION_S = 10 * 86400
"""The longest run accepted (ten simulated days, a quarter of an hour of CPU)."""


def duration_error(duration_s: float) -> str | None:
    """Why ``duration_s`` cannot be simulated, None if it can."""
    if not math.isfinite(duration_s) or not 0 <= duration_s <= MAX_DURATION_S:
        return f"must be a number of seconds from 0 to {MAX_DURATION_S}, got {duration_s:g}"
    return None


def check_duration_flag(duration_s: float) -> None:
    """Raise a configuration error naming ``--duration`` if it cannot be simulated."""
    error = duration_error(duration_s)
    if error is not None:
        raise ConfigError([f"--duration: {error}"])


def simulate(settings: Settings, duration_s: float, terminal: TextIO) -> SimulationResult:
    """Run in an event loop of its own, with a progress line on ``terminal`` if it is one."""
    progress = ProgressLine(terminal) if terminal.isatty() else None
    try:
        return asyncio.run(run_simulation(settings, duration_s, progress))
    finally:
        if progress is not None:
            progress.close()


async def run_simulation(
    settings: Settings, duration_s: float, progress: Progress | None = None
) -> SimulationResult:
    error = duration_error(duration_s)
    if error is not None:
        raise ValueError(f"duration: {error}")
    clock = _VirtualClock()
    warnings: list[SimWarning] = []
    with recording_warnings(clock.now, warnings):
        return await _run(settings, duration_s, clock, warnings, progress)


async def _run(
    settings: Settings,
    duration_s: float,
    clock: _VirtualClock,
    warnings: list[SimWarning],
    progress: Progress | None,
) -> SimulationResult:
    backend = SimBackend(settings.simulation, settings.contexts, clock.now)
    interval = settings.interval_s
    coordinator = Coordinator(interval, Tiers.of_simulation(settings.simulation))
    loops = {
        ctx.name: ContextLoop(
            ctx,
            backend,
            coordinator,
            interval,
            record_history=False,
            step_bytes=settings.simulation.chunk_bytes,
        )
        for ctx in settings.contexts
    }
    series = {name: Series() for name in loops}
    for at_s, label, _ in scheduled_changes(settings):
        if at_s > duration_s:
            log.warning(f"{label} at {at_s:g} s is after the run's end ({duration_s:g} s): skipped")
    events: list[GoalEventConfig] = settings.simulation.goal_events
    changes = [c for c in scheduled_changes(settings) if c[0] <= duration_s]
    await backend.open()
    for loop in loops.values():
        await loop.setup()
    machine = backend.machine
    marks = [mark(machine, 0.0, "start", workload=True)]
    steps = math.floor(duration_s / interval + 1e-9)
    for i in range(steps + 1):
        clock.t = i * interval
        while events and events[0].at_s <= clock.t:
            _change_target(loops[events[0].context], events.pop(0).target_bp)
        for name, loop in loops.items():
            await loop.step()
            status = loop.status
            snap = status.snapshot
            series[name].append(
                clock.t,
                status.metric_bp or 0,
                status.target_bp,
                status.quota_bytes,
                snap is not None and any(snap.eligible_bytes.values()),
                status.held,
            )
        if i > 0:
            crossed = [c for c in changes if (i - 1) * interval < c[0] <= clock.t]
            if crossed:
                label = "; ".join(c[1] for c in crossed)
                marks.append(mark(machine, clock.t, label, any(c[2] for c in crossed)))
        if progress is not None and i % PROGRESS_EVERY == 0:
            progress(clock.t, duration_s)
    marks.append(mark(machine, clock.t, "end", workload=False))
    results = [
        _context_result(loop, series[loop.cfg.name], machine, marks, warnings, interval)
        for loop in loops.values()
    ]
    await backend.close()
    return SimulationResult(
        duration_s=duration_s,
        seed=settings.simulation.seed,
        description=settings.simulation.description,
        contexts=results,
        marks=marks,
        warnings=list(warnings),
        machine_migrated_bytes=machine.migrated_bytes,
        machine_pingpong_bytes=machine.pingpong_bytes,
        churn_bytes=churn_bytes([m.flows for m in marks]),
    )


def _change_target(loop: ContextLoop, target_bp: int) -> None:
    """Write ``target_bp`` into the context's configuration as a pushed policy's target is
    written, and hand it to the loop as the supervisor hands a changed context."""
    changed = TARGET_FIELD.write(loop.cfg, target_bp)
    if changed != loop.cfg:
        loop.reconfigure(changed)


def _context_result(
    loop: ContextLoop,
    s: Series,
    machine: SimMachine,
    marks: Sequence[PhaseMark],
    warnings: Sequence[SimWarning],
    interval_s: float,
) -> ContextResult:
    ctx = loop.cfg
    scheme = machine.schemes[ctx.name]
    return ContextResult(
        name=ctx.name,
        goal_metric=ctx.goal.metric,
        node=ctx.goal.nid,
        target_bp=ctx.goal.target,
        final_bp=s.value_bp[-1],
        time_to_goal_s=time_to_goal(
            s.measured_points(), ctx.goal.target, band_of(ctx.goal.metric, ctx.goal.target)
        ),
        overshoot_bp=phase_overshoot(
            _measured(s),
            [(m.t_s, _true_value(ctx, m, machine.capacity)) for m in marks[:-1]],
            band_of(ctx.goal.metric, ctx.goal.target),
        ),
        migrated_bytes=scheme.stats.sz_applied,
        pingpong_bytes=scheme.pingpong_bytes,
        held=loop.status.held,
        held_reason=loop.status.held_reason,
        held_s=sum(s.held) * interval_s,
        series=s,
        warnings=[w for w in warnings if ctx.name in w.contexts],
    )


def _measured(s: Series) -> list[tuple[float, int, int]]:
    """``(t_s, value_bp, target_bp)`` of the iterations of ``s`` that measured something."""
    return [
        (t, v, target)
        for t, v, target, m in zip(s.t_s, s.value_bp, s.target_bp, s.measured, strict=True)
        if m
    ]


def _true_value(ctx: ContextConfig, at: PhaseMark, capacity: Mapping[int, int]) -> int | None:
    """The goal's value on the machine's true access rates at ``at`` (None: nothing is
    eligible there), which measurements reach only once the change has aged."""
    eligible = at.steady_eligible.get(ctx.name)
    if not eligible or not any(eligible.values()) or ctx.goal.metric not in SHARE_METRICS:
        return None  # a memory metric is measured as it is: its first value tells its side
    return goal_value_bp(ctx.goal.metric, ctx.goal.nid, eligible, capacity)
