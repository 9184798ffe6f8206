"""A simulated tiered-memory machine with DAMON-like monitoring and DAMOS schemes.

Memory is a list of fixed-size chunks (the simulator's regions), each with a
true access rate. Every aggregation step the machine samples each chunk's
``nr_accesses`` with binomial-like noise and ages it, as DAMON does; schemes
then act on the chunks that match their access pattern, within their quota
window and the machine's migration bandwidth, and only onto nodes with room.

Kernel behaviour reproduced:
- a size quota of 0 means no limit; goals make the tuner (``consist`` or
  ``temporal``) set the effective quota once per reset interval;
- the highest-priority regions (weights on nr_accesses and age) go first, and
  a region that does not fit the rest of the quota is split to fit; here a
  chunk is moved whole with probability remainder/size instead, which keeps
  the expected bytes;
- a failed migration (destination full) is charged to the quota all the same;
- a migrated chunk's access count and age restart at 0, so it looks cold on
  its destination until it has been sampled again and has aged.

The workload changes as scheduled: shifts swap access rates between sets, and
phases grow a set (new chunks placed as the set is, unsampled) or shrink it
(chunks freed at random). Every migration is counted per route and set
(:attr:`SimMachine.flows`), which is what churn is judged by.

Simplifications, on purpose: one aggregation clock for the whole machine, and
a chunk's age restarts when its access count moves by more than a third of the
samples per aggregation (the kernel's threshold adapts; this keeps the noise
from resetting hot chunks all the time).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from damond.backend.simulated.memory import Chunk, Pattern
from damond.config import SimulationConfig
from damond.control.goalmetric import node_eligible_mem_bp
from damond.control.tuners import GOAL_SCORE, ULONG_MAX, goal_score, next_effective_quota
from damond.model import damon as model
from damond.model.measurement import SchemeStats


@dataclass
class SimScheme:
    """A context's working scheme and its kernel-side quota state."""

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
    enabled: bool = True
    window_start: float = -math.inf
    charged: int = 0
    esz: int = 0
    esz_bp: int = 0
    stats: SchemeStats = field(default_factory=SchemeStats)
    pingpong_bytes: int = 0

    @property
    def has_goals(self) -> bool:
        return any(g.target_value > 0 for g in self.goals)


class SimMachine:
    """The machine; :meth:`advance_to` moves it forward in whole aggregation steps."""

    def __init__(self, cfg: SimulationConfig, step_s: float, samples_per_step: int) -> None:
        self.cfg = cfg
        self.step_s = step_s
        self.samples = max(1, samples_per_step)
        self.t = 0.0
        self.rng = random.Random(cfg.seed)
        self.capacity = {n.id: n.capacity_bytes for n in cfg.nodes}
        self.used = dict.fromkeys(self.capacity, 0)
        self.by_node: dict[int, list[Chunk]] = {n: [] for n in self.capacity}
        self.chunks: list[Chunk] = []
        self.schemes: dict[str, SimScheme] = {}
        self.migrated_bytes = 0
        self.pingpong_bytes = 0
        self.flows: dict[tuple[int, int, str], int] = {}
        """Bytes migrated from node to node, per set of pages: what churn counts."""
        self._pending_shifts = sorted(cfg.shifts, key=lambda s: s.at_s)
        self._pending_phases = cfg.set_phases
        self._rates = {s.name: s.access_rate for s in cfg.sets}
        self._placements = {s.name: s.placement for s in cfg.sets}
        self._turn = 0
        self._reset_threshold = max(1, self.samples // 3)
        self._spread: dict[float, tuple[float, float]] = {}
        """Mean and standard deviation of a sample count, by access rate."""
        self._eligible: dict[Pattern, dict[int, int]] = {}
        """Eligible bytes per node of each pattern asked about since the last sampling,
        kept exact through migrations; contexts sharing a pattern count it once."""
        self._eligible_out: dict[Pattern, Mapping[int, int]] = {}
        """Copies of :attr:`_eligible` handed out until the chunks next change; never
        changed, as snapshots keep them."""
        self._place_memory()

    def _place_memory(self) -> None:
        for mset in self.cfg.sets:
            for _ in range(max(1, mset.bytes // self.cfg.chunk_bytes)):
                self._add_chunk(mset.name, overfill=True)

    def _add_chunk(self, set_name: str, overfill: bool) -> bool:
        """Place one chunk of ``set_name`` as its placement says, or on a node with room;
        without room anywhere, overfill its node (at start) or place nothing (False)."""
        size = self.cfg.chunk_bytes
        nodes = sorted(self.capacity)
        placement = self._placements[set_name]
        if placement == "interleave":
            order = [nodes[(self._turn + i) % len(nodes)] for i in range(len(nodes))]
            self._turn += 1
        else:
            order = [placement, *(n for n in nodes if n != placement)]
        node = next((n for n in order if self.capacity[n] - self.used[n] >= size), None)
        if node is None:
            if not overfill:
                return False
            node = order[0]
        chunk = Chunk(node, size, self._rates[set_name], set_name)
        self.chunks.append(chunk)
        self.by_node[node].append(chunk)
        self.used[node] += size
        self._count_eligible(chunk, size)
        return True

    def _remove_chunk(self, c: Chunk) -> None:
        self._count_eligible(c, -c.size)
        self.chunks.remove(c)
        self.by_node[c.node].remove(c)
        self.used[c.node] -= c.size

    # --- schemes -----------------------------------------------------------

    def add_scheme(self, ctx: model.Context) -> SimScheme:
        scheme = ctx.schemes[0]
        scale = self.samples / ctx.intervals.samples_per_aggr
        steps_per_aggr = ctx.intervals.aggr_us / 1e6 / self.step_s
        pattern = scheme.access_pattern
        sim = SimScheme(
            name=ctx.name,
            source=ctx.nodes[0],
            dest=scheme.target_nid,
            action=scheme.action,
            pattern=Pattern(
                nr_min=pattern.nr_accesses_min * scale,
                nr_max=pattern.nr_accesses_max * scale,
                age_min=math.ceil(pattern.age_min * steps_per_aggr),
                age_max=min(2**62, math.floor(pattern.age_max * steps_per_aggr)),
            ),
            weights=scheme.quota.weights,
            quota_bytes=scheme.quota.bytes,
            reset_interval_s=scheme.quota.reset_interval_ms / 1000,
            goals=list(scheme.quota.goals),
            tuner=scheme.quota.goal_tuner,
        )
        self.schemes[ctx.name] = sim
        return sim

    def remove_scheme(self, name: str) -> None:
        self.schemes.pop(name, None)

    def eligible_bytes(self, pattern: Pattern) -> Mapping[int, int]:
        """Bytes per node matching ``pattern`` now; callers must not change the mapping,
        which is shared by every caller until the chunks next change."""
        out = self._eligible_out.get(pattern)
        if out is None:
            out = self._eligible_out[pattern] = dict(self._eligible_now(pattern))
        return out

    def _eligible_now(self, pattern: Pattern) -> dict[int, int]:
        """The machine's own counts, which migrations update in place."""
        counts = self._eligible.get(pattern)
        if counts is None:
            matches = pattern.matches
            counts = self._eligible[pattern] = {
                node: sum(c.size for c in chunks if matches(c))
                for node, chunks in self.by_node.items()
            }
        return counts

    def steady_eligible(self, pattern: Pattern) -> dict[int, int]:
        """Bytes per node whose true access rate matches ``pattern`` (age aside): what a
        noise-free monitor reports once every chunk has been sampled and has aged, the
        ground truth that benchmarks' oracles start from."""
        out = dict.fromkeys(self.by_node, 0)
        for node, chunks in self.by_node.items():
            out[node] = sum(
                c.size for c in chunks if pattern.nr_min <= c.rate * self.samples <= pattern.nr_max
            )
        return out

    # --- time --------------------------------------------------------------

    def advance_to(self, t: float) -> None:
        while self.t + self.step_s <= t + 1e-9:
            self.t += self.step_s
            self._step()

    def _step(self) -> None:
        self._apply_shifts()
        self._apply_phases()
        self._sample()
        order = list(self.schemes.values())
        if order:
            k = int(self.t / self.step_s) % len(order)
            order = order[k:] + order[:k]
        budget = self.cfg.bandwidth_bytes_per_s * self.step_s
        for scheme in order:
            self._adjust_quota(scheme)
            budget = self._apply(scheme, budget)

    def _apply_shifts(self) -> None:
        while self._pending_shifts and self._pending_shifts[0].at_s <= self.t:
            shift = self._pending_shifts.pop(0)
            src = [c for c in self.chunks if c.set_name == shift.from_set]
            dst = [c for c in self.chunks if c.set_name == shift.to_set]
            count = min(len(dst), round(len(src) * shift.fraction))
            for a, b in zip(self.rng.sample(src, count), self.rng.sample(dst, count), strict=True):
                a.rate, b.rate = b.rate, a.rate
                a.set_name, b.set_name = b.set_name, a.set_name

    def _apply_phases(self) -> None:
        """Grow or shrink sets whose phase is due (growth stops when the machine is full)."""
        while self._pending_phases and self._pending_phases[0].at_s <= self.t:
            phase = self._pending_phases.pop(0)
            members = [c for c in self.chunks if c.set_name == phase.set]
            change = phase.bytes // self.cfg.chunk_bytes - len(members)
            for _ in range(change):
                if not self._add_chunk(phase.set, overfill=False):
                    break
            if change < 0:
                for c in self.rng.sample(members, -change):
                    self._remove_chunk(c)

    def _sample(self) -> None:
        self._eligible.clear()
        self._eligible_out.clear()
        n = self.samples
        gauss = self.rng.gauss
        spread = self._spread
        threshold = self._reset_threshold
        for c in self.chunks:
            rate = c.rate
            if rate <= 0.0:
                nr = 0
            elif rate >= 1.0:
                nr = n
            else:
                mean_sd = spread.get(rate)
                if mean_sd is None:
                    mean = n * rate
                    mean_sd = spread[rate] = (mean, math.sqrt(mean * (1.0 - rate)))
                nr = round(gauss(*mean_sd))
                nr = 0 if nr < 0 else (n if nr > n else nr)
            if abs(nr - c.nr) > threshold:
                c.age = 0
            else:
                c.age += 1
            c.nr = nr

    # --- quota -------------------------------------------------------------

    def goal_current(self, scheme: SimScheme, goal: model.QuotaGoal) -> int:
        if goal.metric is model.GoalMetric.NODE_ELIGIBLE_MEM_BP:
            return node_eligible_mem_bp(self._eligible_now(scheme.pattern), goal.nid)
        return goal.current_value

    def _adjust_quota(self, scheme: SimScheme) -> None:
        if self.t < scheme.window_start + scheme.reset_interval_s - 1e-9:
            return
        if scheme.window_start > -math.inf and scheme.esz > 0 and scheme.charged >= scheme.esz:
            scheme.stats = _add(scheme.stats, qt_exceeds=1)
        scheme.window_start = self.t
        scheme.charged = 0
        if scheme.has_goals:
            score = max(
                (
                    goal_score(self.goal_current(scheme, g), g.target_value)
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

    # --- actions -----------------------------------------------------------

    def _priority(self, scheme: SimScheme, c: Chunk) -> float:
        w = scheme.weights
        hot = c.nr / self.samples
        age = min(1.0, c.age / 100)
        if scheme.action is model.Action.MIGRATE_COLD:
            hot = 1.0 - hot
        return w.nr_accesses_permil * hot + w.age_permil * age

    def _apply(self, scheme: SimScheme, budget: float) -> float:
        """Take ``scheme``'s candidates in priority order within its quota and ``budget``.

        Every chunk is ``chunk_bytes`` long, so whether a turn takes a chunk does not
        depend on which one, and the number of turns is the eligible bytes on the source
        over a chunk: the candidates are listed and ranked only once one is taken, which
        a quota of less than a chunk (an idle context's) rarely does.
        """
        if not scheme.enabled or scheme.esz <= scheme.charged or budget <= 0:
            return budget
        size = self.cfg.chunk_bytes
        matches = scheme.pattern.matches
        candidates: list[Chunk] = []
        tried = applied = nr_tried = nr_applied = 0
        for turn in range(self._eligible_now(scheme.pattern)[scheme.source] // size):
            remaining = scheme.esz - scheme.charged
            if remaining <= 0 or budget < size:
                break
            if remaining < size:
                scheme.charged = scheme.esz
                if self.rng.random() >= remaining / size:
                    break
            else:
                scheme.charged += size
            if turn == 0:
                candidates = [c for c in self.by_node[scheme.source] if matches(c)]
                candidates.sort(key=lambda c: self._priority(scheme, c), reverse=True)
            tried += size
            nr_tried += 1
            if self.capacity[scheme.dest] - self.used[scheme.dest] < size:
                continue
            self._move(scheme, candidates[turn])
            budget -= size
            applied += size
            nr_applied += 1
        if nr_tried:
            scheme.stats = _add(
                scheme.stats,
                nr_tried=nr_tried,
                sz_tried=tried,
                nr_applied=nr_applied,
                sz_applied=applied,
            )
        return budget

    def _move(self, scheme: SimScheme, c: Chunk) -> None:
        src, dst = c.node, scheme.dest
        self._count_eligible(c, -c.size)
        self.by_node[src].remove(c)
        self.by_node[dst].append(c)
        self.used[src] -= c.size
        self.used[dst] += c.size
        if c.last_from == dst and self.t - c.last_move_t <= self.cfg.pingpong_window_s:
            self.pingpong_bytes += c.size
            scheme.pingpong_bytes += c.size
        c.last_from, c.last_move_t = src, self.t
        c.node = dst
        c.nr = 0
        c.age = 0
        self.migrated_bytes += c.size
        route = (src, dst, c.set_name)
        self.flows[route] = self.flows.get(route, 0) + c.size
        self._count_eligible(c, c.size)

    def _count_eligible(self, c: Chunk, delta: int) -> None:
        """Keep the eligible bytes exact as ``c`` leaves (-size) or joins (+size) its node."""
        self._eligible_out.clear()
        for pattern, counts in self._eligible.items():
            if pattern.matches(c):
                counts[c.node] += delta


def _add(stats: SchemeStats, **delta: int) -> SchemeStats:
    return SchemeStats(
        nr_tried=stats.nr_tried + delta.get("nr_tried", 0),
        sz_tried=stats.sz_tried + delta.get("sz_tried", 0),
        nr_applied=stats.nr_applied + delta.get("nr_applied", 0),
        sz_applied=stats.sz_applied + delta.get("sz_applied", 0),
        qt_exceeds=stats.qt_exceeds + delta.get("qt_exceeds", 0),
    )
