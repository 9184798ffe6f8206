"""How a run is judged: time to goal and overshoot, from a metric's history."""

from __future__ import annotations

BAND_BP = 100
"""A value within this many basis points of its target counts as on target."""


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
