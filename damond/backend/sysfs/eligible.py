"""Eligible bytes of a node from its quota-less ``stat`` scheme, smoothed over a window.

DAMON's view of what is hot changes every aggregation interval, so one interval
is a noisy sample; damond averages over the last ``window_s`` seconds. On 7.0+
the scheme's cumulative ``sz_tried`` and ``nr_snapshots`` give the average per
apply interval directly; older kernels give one ``total_bytes`` per walk, which
are averaged.
"""

from __future__ import annotations

from collections import deque


class CounterWindow:
    """From cumulative ``(sz_tried, nr_snapshots)``: bytes tried per snapshot in the window."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int, int]] = deque()

    def add(self, t: float, sz_tried: int, nr_snapshots: int) -> int | None:
        """The window's average, or None while no snapshot happened in it."""
        self._samples.append((t, sz_tried, nr_snapshots))
        # the base is the newest sample at least window_s old (or the oldest one)
        while len(self._samples) > 2 and self._samples[1][0] <= t - self.window_s:
            self._samples.popleft()
        _, base_sz, base_nr = self._samples[0]
        snapshots = nr_snapshots - base_nr
        if snapshots <= 0:
            return None
        return max(0, sz_tried - base_sz) // snapshots


class ValueWindow:
    """From one reading per walk (``tried_regions/total_bytes``): their mean in the window."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, t: float, value: int) -> int:
        self._samples.append((t, value))
        while len(self._samples) > 1 and self._samples[0][0] < t - self.window_s:
            self._samples.popleft()
        return sum(v for _, v in self._samples) // len(self._samples)
