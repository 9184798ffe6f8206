"""DAMON's monitoring model: one context's regions, sampled, merged and split as the
kernel's ``mm/damon/core.c`` does, each context on its own clock.

A context watches every node's memory (as damond's kdamonds do: one target over all
online memory, per-node ``stat`` schemes reading it), in regions that never cross a
node's end (the kernel's core ``addr`` filters split them there). Each aggregation:

- every region's ``nr_accesses`` is drawn from ``samples`` samples, each of one random
  page in the region: the page is accessed with its chunk's true rate, so the count
  is binomial with the region's mean rate, and a region mixing hot and cold pages
  reads in between;
- regions are merged as ``kdamond_merge_regions`` does: age restarts where
  ``nr_accesses`` moved by more than the threshold (a tenth of the largest count) and
  grows by one elsewhere; adjacent regions whose counts differ by at most the
  threshold merge while the sum stays under the size limit (total / ``nr_regions_min``),
  taking the size-weighted mean of count and age; while more than ``nr_regions_max``
  regions remain, the threshold doubles and they are merged again;
- after the schemes, while at most half of ``nr_regions_max`` regions exist, every
  region is split at random into two pieces (three when the count did not change
  since the last split and is under a third of the maximum), each piece 10-90 % of
  what is left, on ``min_region_sz`` boundaries.

Departs from the kernel only where ``age_reset_share`` is set (unset by default): a
region's age restarts when its count moves by more than that share of the samples,
not by more than the merge threshold, which at 20 samples (2) keeps restarting the
age of memory accessed in 90 % of samples (real hot buffers read 1.0 and keep it).

Simplified: region boundaries fall on chunk boundaries (``min_region_sz`` is a
multiple of the chunk); a region is sampled as it is at the end of its aggregation
(memory that moved in mid-interval counts whole); the kernel's ``ops update`` (new
memory ranges) is not needed, as nodes never change size.
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
import random

from damond.backend.simulated.memory import Pattern
from damond.backend.simulated.space import AddressSpace

MAX_SUBSCORE = 100
MAX_AGE_IN_LOG = 32
MAX_SCORE = 99


P_STEPS = 4096
"""Chances are rounded to this many steps, so that their distributions can be kept."""

_CDF: dict[int, dict[float, list[float]]] = {}
"""Distributions by number of trials and chance."""


def _cdf(n: int, step: int) -> list[float]:
    p = step / P_STEPS
    q = 1.0 - p
    pmf = q**n
    out = [pmf]
    for k in range(n):
        pmf *= p / q * (n - k) / (k + 1)
        out.append(out[-1] + pmf)
    out[-1] = 1.0
    return out


def _kept_cdf(n: int, p: float) -> list[float]:
    """The distribution of ``n`` trials of chance ``p`` (0 < p < 1), kept by chance."""
    kept = _CDF.setdefault(n, {})
    cdf = kept.get(p)
    if cdf is None:
        if len(kept) > 4 * P_STEPS:
            kept.clear()
        cdf = kept[p] = _cdf(n, min(P_STEPS - 1, max(1, round(p * P_STEPS))))
    return cdf


def binomial(rng: random.Random, n: int, p: float) -> int:
    """Successes in ``n`` trials of chance ``p``: one uniform draw through the kept
    distribution (normal beyond a thousand trials)."""
    if p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    if n > 1000:
        draw = round(rng.gauss(n * p, math.sqrt(n * p * (1.0 - p))))
        return min(n, max(0, draw))
    return bisect.bisect_right(_kept_cdf(n, p), rng.random())


class Monitor:
    """One context's regions over ``space``, as parallel lists in address order."""

    def __init__(
        self,
        space: AddressSpace,
        samples: int,
        aggr_s: float,
        nr_regions: tuple[int, int],
        min_region_frames: int,
        age_reset_share: float | None = None,
    ) -> None:
        self.space = space
        self.age_reset_share = age_reset_share
        """The share of the samples by which a count must move to restart the region's
        age; None: the kernel's threshold (the merge threshold)."""
        self.samples = max(1, samples)
        self.aggr_s = aggr_s
        self.nr_regions_min, self.nr_regions_max = nr_regions
        self.min_frames = min_region_frames
        total = len(space.frames)
        self.sz_limit = max(self.min_frames, total // self.nr_regions_min)
        """The largest region merging may make, in frames (``damon_region_sz_limit``)."""
        self.start: list[int] = []
        self.end: list[int] = []
        self.node: list[int] = []
        for node, (first, end) in sorted(space.bounds.items()):
            pieces = max(1, math.ceil((end - first) / self.sz_limit))
            step = max(
                self.min_frames, (end - first) // pieces // self.min_frames * self.min_frames
            )
            at = first
            while at < end:
                stop = end if end - (at + step) < self.min_frames else at + step
                self.start.append(at)
                self.end.append(stop)
                self.node.append(node)
                at = stop
        count = len(self.start)
        self.nr = [0] * count
        self.last_nr = [0] * count
        self.age = [0] * count
        self._last_split_count = 0
        self.aggregations = 0
        self.last_t = -math.inf
        """When the last aggregation ended, on the context's own clock."""
        self._view: tuple[list[int], list[int], list[int], list[int]] = ([], [], [], [])
        """Sizes, nodes, counts and ages of the regions at the last aggregation."""
        self._view_slices: dict[int, tuple[int, int]] = {n: (0, 0) for n in space.bounds}
        """Each node's regions in :attr:`_view`."""
        self._eligible: dict[Pattern, dict[int, int]] = {}

    def __len__(self) -> int:
        return len(self.start)

    # --- one aggregation ---------------------------------------------------

    def sample(self, rng: random.Random) -> None:
        """Draw every region's ``nr_accesses`` for the interval that just ended."""
        n = self.samples
        if len(self.start) == len(self.space.frames):  # one frame each: its own rate
            chances = self.space.rates()
        else:
            prefix = self.space.prefix()
            chances = [
                (prefix[b] - prefix[a]) / (b - a) for a, b in zip(self.start, self.end, strict=True)
            ]
        if n > 1000:
            self.nr = [binomial(rng, n, p) for p in chances]
            return
        kept = _CDF.setdefault(n, {})
        draw = bisect.bisect_right
        rand = rng.random
        self.nr = [
            0 if p <= 0.0 else n if p >= 1.0 else draw(kept.get(p) or _kept_cdf(n, p), rand())
            for p in chances
        ]

    def merge(self) -> None:
        """Age the regions and merge similar neighbours (``kdamond_merge_regions``)."""
        threshold = max(self.nr) // 10 if self.nr else 0
        share = self.age_reset_share
        age_threshold: int | None = threshold if share is None else int(self.samples * share)
        while True:
            self._merge_pass(threshold, age_threshold)
            age_threshold = None
            threshold = max(1, threshold * 2)
            if len(self) <= self.nr_regions_max or threshold // 2 >= self.samples:
                return

    def _merge_pass(self, thres: int, age_thres: int | None) -> None:
        """One ``damon_merge_regions_of``; ages move too unless ``age_thres`` is None
        (a repeated pass)."""
        if self.sz_limit < 2 * self.min_frames:  # regions as small as they go: no merging
            if age_thres is not None:
                self.age = [
                    0 if abs(x - lx) > age_thres else g + 1
                    for x, lx, g in zip(self.nr, self.last_nr, self.age, strict=True)
                ]
            return
        start: list[int] = []
        end: list[int] = []
        node: list[int] = []
        nr: list[int] = []
        last: list[int] = []
        ages: list[int] = []
        limit = self.sz_limit
        for s, e, n, x, lx, g in zip(
            self.start, self.end, self.node, self.nr, self.last_nr, self.age, strict=True
        ):
            if age_thres is not None:
                g = 0 if abs(x - lx) > age_thres else g + 1
            if start and node[-1] == n and abs(nr[-1] - x) <= thres and e - start[-1] <= limit:
                sz_l, sz_r = end[-1] - start[-1], e - s
                nr[-1] = (nr[-1] * sz_l + x * sz_r) // (sz_l + sz_r)
                ages[-1] = (ages[-1] * sz_l + g * sz_r) // (sz_l + sz_r)
                end[-1] = e
                continue
            start.append(s)
            end.append(e)
            node.append(n)
            nr.append(x)
            last.append(lx)
            ages.append(g)
        self.start, self.end, self.node = start, end, node
        self.nr, self.last_nr, self.age = nr, last, ages

    def split_at(self, i: int, frames: int) -> None:
        """Cut region ``i`` after its first ``frames``; the rest inherits its state."""
        at = self.start[i] + frames
        self.start.insert(i + 1, at)
        self.end.insert(i + 1, self.end[i])
        self.end[i] = at
        for values in (self.node, self.nr, self.last_nr, self.age):
            values.insert(i + 1, values[i])

    def keep_view(self) -> None:
        """What the per-node ``stat`` schemes saw this interval: the regions after the
        working scheme acted (a region it acted on restarted its age)."""
        sizes = list(map(operator.sub, self.end, self.start))
        self._view = (sizes, list(self.node), list(self.nr), list(self.age))
        first = {n: bisect.bisect_left(self.start, a) for n, (a, _) in self.space.bounds.items()}
        self._view_slices = {
            n: (first[n], bisect.bisect_left(self.start, b))
            for n, (_, b) in self.space.bounds.items()
        }
        self._eligible.clear()

    def reset_and_split(self, rng: random.Random) -> None:
        """Start the next interval (``kdamond_reset_aggregated``, ``kdamond_split_regions``)."""
        self.last_nr = list(self.nr)
        count = len(self)
        if count > self.nr_regions_max // 2:
            return
        unit = self.min_frames
        if max(map(operator.sub, self.end, self.start)) <= 2 * unit:
            return  # no region is large enough to split
        subs = 3 if count == self._last_split_count and count < self.nr_regions_max // 3 else 2
        self._last_split_count = count
        i = 0
        while i < len(self):
            size = self.end[i] - self.start[i]
            pieces = 1
            for _ in range(subs - 1):
                if size <= 2 * unit:
                    break
                sub = rng.randint(1, 9) * size // 10 // unit * unit
                if 0 < sub < size:
                    self.split_at(i, sub)
                    pieces += 1
                    size = sub
            i += pieces

    # --- reading -----------------------------------------------------------

    def eligible(self, pattern: Pattern) -> dict[int, int]:
        """Bytes per node in regions matching ``pattern`` at the last aggregation
        (``tried_regions`` of a quota-less scheme); the mapping is shared, read-only."""
        out = self._eligible.get(pattern)
        if out is None:
            sizes, _, nrs, ages = self._view
            nr_min, nr_max = pattern.nr_min, pattern.nr_max
            age_min, age_max = pattern.age_min, pattern.age_max
            mask = [
                nr_min <= x <= nr_max and age_min <= g <= age_max
                for x, g in zip(nrs, ages, strict=True)
            ]
            unit = self.space.frame_bytes
            out = {
                n: unit * sum(itertools.compress(sizes[lo:hi], mask[lo:hi]))
                for n, (lo, hi) in self._view_slices.items()
            }
            self._eligible[pattern] = out
        return out


def hot_score(nr: int, age: int, monitor: Monitor, w_nr: int, w_age: int) -> int:
    """The kernel's ``damon_hot_score``: access frequency and log2 of the age in seconds,
    weighted, 0-99 (``migrate_cold`` uses 99 minus it)."""
    freq = nr * MAX_SUBSCORE // monitor.samples
    age_s = int(age * monitor.aggr_s)
    age_log = 0
    while age_log < MAX_AGE_IN_LOG and age_s:
        age_log += 1
        age_s >>= 1
    if freq == 0:
        age_log = -age_log
    age_sub = (age_log + MAX_AGE_IN_LOG) * MAX_SUBSCORE // MAX_AGE_IN_LOG // 2
    hotness = w_nr * freq + w_age * age_sub
    if w_nr + w_age:
        hotness //= w_nr + w_age
    return hotness * MAX_SCORE // MAX_SUBSCORE
