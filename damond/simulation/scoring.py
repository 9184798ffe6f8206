"""How a run is judged: time to goal, overshoot and churn, from what the run recorded."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

BAND_BP = 100
"""A value within this many basis points of its target counts as on target."""
STALL_BAND_SHARE = 0.05
"""A stall (``some_mem_psi_us``) within this share of its target counts as on target."""


def band_of(metric: str, target: int) -> int:
    """The band around ``target`` that counts as on target for ``metric``."""
    if metric == "some_mem_psi_us":
        return max(1, round(target * STALL_BAND_SHARE))
    return BAND_BP


def time_to_goal(
    history: Sequence[tuple[float, int]], target: int, band: int = BAND_BP
) -> float | None:
    """The time from which the value stays within ``band`` of ``target`` to the end."""
    if not history or abs(history[-1][1] - target) > band:
        return None
    for i in range(len(history) - 1, -1, -1):
        if abs(history[i][1] - target) > band:
            return history[i + 1][0]
    return history[0][0]


def overshoot(
    history: Sequence[tuple[float, int]],
    target: int,
    band: int = BAND_BP,
    start_bp: int | None = None,
) -> int:
    """The largest excursion beyond ``target`` on the far side from where the value
    started, after it first crossed the target (0 if it never crossed).

    The side it started on is that of ``start_bp``, the true value when the phase began,
    if that is outside ``band``; measurements lag a change of the workload (pages that
    went cold stop counting at once, newly hot ones only once they have aged), so the
    measured values count from when they first show that side. Without ``start_bp`` (or
    inside the band) it is the side of the first measured value outside ``band``. A value
    that jumps straight across the band, or crosses the target and never comes back into
    the band, overshoots by all of its excursion. Judge one phase at a time
    (:func:`phase_overshoot`): a shift of the hot set or a new target starts again.
    """
    start_side = 0
    caught_up = True
    if start_bp is not None and abs(start_bp - target) > band:
        start_side = 1 if start_bp > target else -1
        caught_up = False
    worst = 0
    for _, value in history:
        error = value - target
        if start_side == 0:
            if abs(error) > band:
                start_side = 1 if error > 0 else -1
        elif not caught_up:  # a reading in the band shows no side: it may be one taken
            # before the change was seen (the last phase's value, settled on its target)
            caught_up = error * start_side > band
        elif error * start_side < 0:  # on the far side: it has crossed the target
            worst = max(worst, abs(error))
    return worst


def phase_overshoot(
    points: Sequence[tuple[float, int, int]],
    phases: Sequence[tuple[float, int | None]],
    band: int = BAND_BP,
) -> int:
    """The worst :func:`overshoot` over the phases of a run.

    ``points`` are ``(t_s, value_bp, target_bp)``; ``phases`` are ``(start_s, start_bp)``
    in time order, the first at the start of the run: a phase runs from its start to the
    next one's, against the target of its first point, from ``start_bp``."""
    worst = 0
    for k, (start_s, start_bp) in enumerate(phases):
        end_s = phases[k + 1][0] if k + 1 < len(phases) else float("inf")
        inside = [(t, v, target) for t, v, target in points if start_s <= t < end_s]
        if inside:
            history = [(t, v) for t, v, _ in inside]
            worst = max(worst, overshoot(history, inside[0][2], band, start_bp))
    return worst


Flows = Mapping[tuple[int, int, str], int]
"""Cumulative bytes migrated from node to node, per set of pages."""


def churn_bytes(flows: Sequence[Flows]) -> int:
    """Bytes moved against the net change, summed over phases.

    ``flows[k]`` are the cumulative flows at the k-th phase boundary (the first at the
    start, the last at the end). Within a phase, between two nodes and for one set of
    pages, ``a`` bytes moved one way and ``b`` the other: ``a + b`` bytes moved for a net
    change of ``|a - b|``, so ``2 * min(a, b)`` were moved for nothing. Memory that moves
    back counts whichever pages come back; a move in one direction, a promotion of hot
    pages while cold ones are demoted, pages climbing a chain of tiers, or a move undone
    in a later phase (after the hot set moved) does not.
    """
    total = 0
    for before, after in itertools.pairwise(flows):
        for (src, dst, pages), moved in after.items():
            if src < dst:
                back = after.get((dst, src, pages), 0) - before.get((dst, src, pages), 0)
                there = moved - before.get((src, dst, pages), 0)
                total += 2 * min(there, back)
    return total
