"""The figures benchmarks/calibrate.py compares between the kernel and the simulator,
computed the same way from what either side recorded."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from damond.simulation.scoring import overshoot

MiB = 1 << 20
QUOTA_WINDOW_S = 1.0
BAND_BP = 200
"""Settled: the first reading within 2 % of the target (the VM suite's ``time_to_2pct_s``)."""
STEADY_S = 60.0
OVERSHOOT_S = 20.0
AGREE = 0.25
POLL_S = 0.1
"""The simulator's side reads its migration counter this often (the guest every 0.2 s)."""


@dataclass(frozen=True)
class Run:
    """What one side recorded, in seconds since the kdamond turned on."""

    metric: list[tuple[float, int]]
    """(t, metric_bp) of every iteration that measured something."""
    moved: list[tuple[float, int]]
    """(t, bytes migrated since the start)."""


@dataclass(frozen=True)
class Row:
    name: str
    unit: str
    resolution: float
    """The coarsest step either side measures this figure in: a difference within it
    agrees whatever the ratio."""


# resolutions: the guest polls its migration counter every 0.2 s and the kernel moves
# pages once per aggregation (0.2-0.7 s under TCG); damond reads once a second
ROWS = (
    Row("time to first move", "s", 0.5),
    Row("bytes moved per quota window", "MiB", 0.25),
    Row("noise (sigma, last minute)", "bp", 10.0),
    Row("time to settle (within 2 %)", "s", 1.0),
    Row("overshoot (3-reading median)", "bp", 50.0),
)


def figures(run: Run, target_bp: int) -> dict[str, float | None]:
    """The compared figures of one run (None: it never happened). Times count from
    damond's first measurement: before it, no quota is granted, and when it comes is
    the backend's (the sysfs backend waits for the kdamond's regions to settle and
    averages over its measuring window), not the machine's."""
    t0 = run.metric[0][0] if run.metric else 0.0
    first_move = next((t - t0 for t, b in run.moved if b > 0), None)
    settle = next((t - t0 for t, m in run.metric if abs(m - target_bp) <= BAND_BP), None)
    per_window = None
    if first_move is not None and run.moved:
        start = first_move + t0
        reached = next((t for t, m in run.metric if m >= target_bp - BAND_BP), None)
        end = max(reached if reached is not None else run.moved[-1][0], start + QUOTA_WINDOW_S)
        moved = _moved_at(run.moved, end) - _moved_at(run.moved, start - POLL_S)
        per_window = moved / MiB / ((end - start) / QUOTA_WINDOW_S)
    # overshoot: what the approach carried beyond the target, on the running median
    # (one reading out is noise), until OVERSHOOT_S after the band was first reached;
    # later excursions are noise that a pull context ratchets in (a dip brings a move
    # that nothing undoes), which the noise row shows
    end_s = (settle + t0 + OVERSHOOT_S) if settle is not None else math.inf
    approach = [(t, m) for t, m in _running_median(run.metric) if t <= end_s]
    last = run.metric[-1][0] if run.metric else 0.0
    steady = [m for t, m in run.metric if t >= last - STEADY_S]
    return {
        "time to first move": first_move,
        "bytes moved per quota window": per_window,
        "noise (sigma, last minute)": statistics.pstdev(steady) if len(steady) > 1 else None,
        "time to settle (within 2 %)": settle,
        "overshoot (3-reading median)": float(overshoot(approach, target_bp, BAND_BP)),
    }


def _running_median(points: Sequence[tuple[float, int]]) -> list[tuple[float, int]]:
    """Each reading replaced by the median of it and its neighbours: one reading's
    excursion is noise (its own row), overshoot is what lasts."""
    values = [m for _, m in points]
    return [
        (t, sorted(values[max(0, i - 1) : i + 2])[len(values[max(0, i - 1) : i + 2]) // 2])
        for i, (t, _) in enumerate(points)
    ]


def median_figures(runs: Sequence[dict[str, float | None]]) -> dict[str, float | None]:
    """Each figure's median over the runs (None when it never happened in most)."""
    out: dict[str, float | None] = {}
    for row in ROWS:
        values = [r[row.name] for r in runs]
        seen = sorted(v for v in values if v is not None)
        out[row.name] = statistics.median(seen) if len(seen) * 2 > len(values) else None
    return out


def _moved_at(moved: Sequence[tuple[float, int]], t: float) -> int:
    """Bytes migrated by time ``t`` (the last reading at or before it)."""
    before = [b for s, b in moved if s <= t]
    return before[-1] if before else 0


def agree(row: Row, guest: float | None, sim: float | None) -> bool:
    if guest is None or sim is None:
        return guest is sim
    return abs(sim - guest) <= max(AGREE * abs(guest), row.resolution)
