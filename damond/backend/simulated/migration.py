"""DAMOS as the kernel applies it: the quota window, the effective quota, the choice of
regions by score, and page migration bounded by the machine's bandwidth.

Once per aggregation of its context (``apply_interval`` 0), a scheme:

- starts a new charge window every ``reset_interval`` (counting ``qt_exceeds`` when
  the last one ended full) and sets the effective quota ``esz``: the goal tuner's
  (``consist`` or ``temporal``) capped by ``bytes``, or ``bytes`` alone, 0 meaning
  no limit;
- ranks the matching regions of its source node by the kernel's score (weights on
  ``nr_accesses`` and age) and takes, in address order, those whose score reaches
  the lowest score that the highest-priority ``esz`` bytes need;
- splits a region larger than the rest of the quota to fit (on ``min_region_sz``),
  and stops when the quota is full or less than a ``min_region_sz`` is left (7.2);
- migrates each chunk of the region to the destination, which fails once the
  destination node is full (``lru_prio`` and ``lru_deprio`` put the chunks on an LRU
  list instead, :mod:`.lru`, ranking regions as ``migrate_hot`` and ``migrate_cold``
  do), and restarts the region's age;
- charges the region's size, or, with ``fail_charge_denom`` set (7.2), the migrated
  bytes plus the rest times ``fail_charge_num / fail_charge_denom``.

Migration takes time: one engine per machine moves ``bandwidth_bytes_per_s``, and the
kdamond waits for its pages, so its next aggregation is late by as much. Pages
being migrated are isolated from the LRU: their accesses are not seen until each has
moved and ``migration_settle_s`` has passed.

Simplified: with less than one simulated region of quota left, where the kernel
splits off that many pages, one region is taken with the chance that keeps the
expected bytes; a window that ended full starts the next from the first region
again (the kernel resumes after the last region charged; the lru actions do, since
they leave the pages they acted on where they were); the quota's ``ms`` time
limit is not modelled (damond does not set it).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from damond.backend.simulated.lru import set_lru
from damond.backend.simulated.memory import Chunk, Pattern
from damond.backend.simulated.regions import MAX_SCORE, Monitor, hot_score
from damond.backend.simulated.space import AddressSpace
from damond.config import SimulationConfig
from damond.control.goalmetric import node_eligible_mem_bp
from damond.control.tuners import GOAL_SCORE, ULONG_MAX, goal_score, next_effective_quota
from damond.model import damon as model
from damond.model.measurement import SchemeStats

PAGE_BYTES = 4096
"""The kernel's ``min_region_sz`` on paddr: a quota with less left is full."""


@dataclass
class SimScheme:
    """A context's working scheme, its regions and its kernel-side quota state."""

    name: str
    source: int
    dest: int
    action: model.Action
    pattern: Pattern
    weights: model.Weights
    quota_bytes: int
    reset_interval_s: float
    goals: list[model.QuotaGoal]
    tuner: model.GoalTuner
    monitor: Monitor
    passes: Callable[[Chunk], bool] = lambda _: True
    """Whether the scheme's DAMOS filters let it migrate a chunk's pages."""
    measure: Callable[[model.QuotaGoal], int] | None = None
    """A memory metric's current value, as the kernel computes it."""
    enabled: bool = True
    window_start: float = -math.inf
    charged: int = 0
    esz: int = 0
    esz_bp: int = 0
    stats: SchemeStats = field(default_factory=SchemeStats)
    pingpong_bytes: int = 0
    tried_by_node: dict[int, int] = field(default_factory=dict)
    """The per-node ``stat`` schemes' cumulative ``sz_tried`` (eligible bytes summed over
    aggregations), with :attr:`nr_snapshots`, as damond reads them from a 7.0+ kernel."""
    nr_snapshots: int = 0
    resume_frame: int = 0
    """Where an lru action's next application resumes, after the last region charged
    when its quota filled (the kernel's ``charge_addr_from``); 0: from the first."""

    def record_view(self) -> None:
        """Count this aggregation's eligible bytes into the ``stat`` counters."""
        for node, size in self.monitor.eligible(self.pattern).items():
            self.tried_by_node[node] = self.tried_by_node.get(node, 0) + size
        self.nr_snapshots += 1

    @property
    def has_goals(self) -> bool:
        return any(g.target_value > 0 for g in self.goals)

    @property
    def reported_esz(self) -> int:
        """``quotas/effective_bytes`` as the kernel shows it: 0 for no limit (no goals and
        no size quota), else the effective quota."""
        if self.esz >= ULONG_MAX and not self.has_goals:
            return 0
        return min(self.esz, ULONG_MAX)

    def goal_current(self, goal: model.QuotaGoal) -> int:
        if goal.metric is model.GoalMetric.NODE_ELIGIBLE_MEM_BP:
            return node_eligible_mem_bp(self.monitor.eligible(self.pattern), goal.nid)
        if self.measure is not None and goal.metric is not model.GoalMetric.USER_INPUT:
            return self.measure(goal)
        return goal.current_value


class Migrator:
    """The machine's page mover: placement bookkeeping, bandwidth and counters."""

    def __init__(self, cfg: SimulationConfig, space: AddressSpace, rng: random.Random) -> None:
        self.cfg = cfg
        self.space = space
        self.rng = rng
        self.capacity = {n.id: n.capacity_bytes for n in cfg.nodes}
        self.used = dict.fromkeys(self.capacity, 0)
        self.by_node: dict[int, list[Chunk]] = {n: [] for n in self.capacity}
        self.engine_free_at = 0.0
        """When the migration engine has moved everything it was given."""
        self.migrated_bytes = 0
        self.pingpong_bytes = 0
        self.flows: dict[tuple[int, int, str], int] = {}
        """Bytes migrated from node to node, per set of pages: what churn counts."""

    def has_room(self, node: int, size: int) -> bool:
        return self.capacity[node] - self.used[node] >= size and self.space.free_frames(node) > 0

    # --- quota -------------------------------------------------------------

    def adjust_quota(self, scheme: SimScheme, t: float) -> None:
        if t < scheme.window_start + scheme.reset_interval_s - 1e-9:
            return
        if scheme.window_start > -math.inf and scheme.esz > 0 and self._full(scheme):
            scheme.stats = _add(scheme.stats, qt_exceeds=1)
        scheme.window_start = t
        scheme.charged = 0
        if scheme.has_goals:
            score = max(
                (
                    goal_score(scheme.goal_current(g), g.target_value)
                    for g in scheme.goals
                    if g.target_value > 0
                ),
                default=GOAL_SCORE,
            )
            scheme.esz_bp, scheme.esz = next_effective_quota(
                scheme.tuner, scheme.esz_bp, score, scheme.quota_bytes
            )
        else:
            scheme.esz = scheme.quota_bytes if scheme.quota_bytes > 0 else ULONG_MAX

    @staticmethod
    def _full(scheme: SimScheme) -> bool:
        """The quota is used up, or less than the kernel's ``min_region_sz`` (a page on
        paddr) is left of it (7.2)."""
        left = scheme.esz - scheme.charged
        return left < PAGE_BYTES

    # --- applying ----------------------------------------------------------

    def apply(self, scheme: SimScheme, t: float) -> float:
        """Apply ``scheme`` to its monitor's regions at ``t``; returns when the kdamond
        is free again (after the pages it migrated have moved)."""
        if not scheme.enabled or self._full(scheme):
            return t
        mon = scheme.monitor
        unit = self.space.frame_bytes
        matches = scheme.pattern.matches
        w = scheme.weights
        cold = scheme.action in (model.Action.MIGRATE_COLD, model.Action.LRU_DEPRIO)
        scores: list[tuple[int, int]] = []
        for i in range(len(mon)):
            if mon.node[i] == scheme.source and matches(mon.nr[i], mon.age[i]):
                score = hot_score(mon.nr[i], mon.age[i], mon, w.nr_accesses_permil, w.age_permil)
                scores.append((i, MAX_SCORE - score if cold else score))
        if not scores:
            return t
        min_score = _min_score(scores, mon, scheme.esz, unit)
        start = max(t, self.engine_free_at)
        busy = 0.0
        nr_tried = tried = nr_applied = applied = 0
        picked = {i for i, s in scores if s >= min_score}
        offset = 0
        """Regions inserted by splits, which shift the indices after them."""
        order = sorted(picked)
        resume, scheme.resume_frame, last_end = scheme.resume_frame, 0, 0
        cut = next((i for i in order if mon.end[i] > resume), None) if resume else None
        if cut is not None and mon.start[cut] < resume:  # split where the last one ended
            mon.split_at(cut, resume - mon.start[cut])
            order = [cut + 1, *(i + 1 for i in order if i > cut)]
        elif cut is not None:
            order = [i for i in order if i >= cut]
        for index in order:
            i = index + offset
            if self._full(scheme):
                break
            frames = mon.end[i] - mon.start[i]
            left = scheme.esz - scheme.charged
            if frames * unit > left:
                fit = left // unit // mon.min_frames * mon.min_frames
                if fit <= 0:
                    # less than a simulated region is left, where the kernel would split
                    # off that many pages: one region is taken with the chance that
                    # keeps the expected bytes
                    if self.rng.random() >= left / (mon.min_frames * unit):
                        scheme.charged = scheme.esz
                        break
                    fit = mon.min_frames
                if fit < frames:
                    mon.split_at(i, fit)
                    offset += 1
                    frames = fit
            size = frames * unit
            if scheme.action.moves_lru:  # marks pages, moves none: no bandwidth taken
                chunks = self.space.frames[mon.start[i] : mon.end[i]]
                active = scheme.action is model.Action.LRU_PRIO
                moved = set_lru(chunks, scheme.passes, active)
            else:
                moved = self._migrate(scheme, mon.start[i], mon.end[i], start + busy, t)
                busy += moved / self.cfg.bandwidth_bytes_per_s
            mon.age[i] = 0
            scheme.charged += self._charge(size, moved)
            nr_tried += 1
            tried += size
            nr_applied += 1 if moved else 0
            last_end = mon.end[i]
            applied += moved
        if scheme.action.moves_lru and self._full(scheme):
            scheme.resume_frame = last_end
        if nr_tried:
            scheme.stats = _add(
                scheme.stats,
                nr_tried=nr_tried,
                sz_tried=tried,
                nr_applied=nr_applied,
                sz_applied=applied,
            )
        if busy:
            self.engine_free_at = start + busy
            return self.engine_free_at
        return t

    def _charge(self, size: int, moved: int) -> int:
        num, denom = self.cfg.fail_charge_num, self.cfg.fail_charge_denom
        if not denom:
            return size
        return moved + (size - moved) * num // denom

    def _migrate(self, scheme: SimScheme, first: int, end: int, begin: float, t: float) -> int:
        """Move the chunks of frames ``[first, end)`` to the destination, one after the
        other from ``begin``; returns the bytes moved."""
        moved = 0
        frames = self.space.frames
        for slot in range(first, end):
            c = frames[slot]
            if c is None or not scheme.passes(c) or not self.has_room(scheme.dest, c.size):
                continue
            self.move(c, scheme.dest, t, scheme)
            moved += c.size
            done = begin + moved / self.cfg.bandwidth_bytes_per_s
            self.space.hide(c, done + self.cfg.migration_settle_s)
        return moved

    def move(self, c: Chunk, dst: int, t: float, scheme: SimScheme | None = None) -> None:
        src = c.node
        self.space.remove(c)
        self.by_node[src].remove(c)
        self.used[src] -= c.size
        self.space.place(c, dst)
        self.by_node[dst].append(c)
        self.used[dst] += c.size
        if c.last_from == dst and t - c.last_move_t <= self.cfg.pingpong_window_s:
            self.pingpong_bytes += c.size
            if scheme is not None:
                scheme.pingpong_bytes += c.size
        c.last_from, c.last_move_t = src, t
        self.migrated_bytes += c.size
        route = (src, dst, c.set_name)
        self.flows[route] = self.flows.get(route, 0) + c.size


def _min_score(scores: list[tuple[int, int]], mon: Monitor, esz: int, unit: int) -> int:
    """The lowest score the highest-priority ``esz`` bytes reach (``min_score``)."""
    histogram: dict[int, int] = {}
    for i, s in scores:
        histogram[s] = histogram.get(s, 0) + (mon.end[i] - mon.start[i]) * unit
    cumulated = 0
    for score in sorted(histogram, reverse=True):
        cumulated += histogram[score]
        if cumulated >= esz:
            return score
    return 0


def _add(stats: SchemeStats, **delta: int) -> SchemeStats:
    return SchemeStats(
        nr_tried=stats.nr_tried + delta.get("nr_tried", 0),
        sz_tried=stats.sz_tried + delta.get("sz_tried", 0),
        nr_applied=stats.nr_applied + delta.get("nr_applied", 0),
        sz_applied=stats.sz_applied + delta.get("sz_applied", 0),
        qt_exceeds=stats.qt_exceeds + delta.get("qt_exceeds", 0),
    )
