"""A simulated tiered-memory machine with DAMON's monitoring and DAMOS migration.

What is modelled, and where:

- the ground truth (:mod:`.memory`, :mod:`.space`): memory is chunks of
  ``chunk_bytes``, each in one frame of its node's address range, each with a true
  access rate (the chance a sample finds one of its pages accessed);
- monitoring (:mod:`.regions`): each context has its own DAMON regions over every
  node, sampled, merged and split as the kernel does, on the context's own clock
  (its aggregation interval, jittered by ``clock_jitter``); the eligible bytes are
  the sizes of the regions matching the scheme's access pattern;
- DAMOS (:mod:`.migration`): quota windows, the goal tuners, region scores,
  split-to-fit, failures on a full node and their charging, the migration
  bandwidth and the isolation of pages being migrated.

The workload changes as scheduled: shifts swap access rates between sets, and
phases grow a set (new chunks placed as the set is) or shrink it (chunks freed at
random). Every migration is counted per route and set (:attr:`SimMachine.flows`),
which is what churn is judged by.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Mapping

from damond.backend.simulated.filters import PageSelector
from damond.backend.simulated.lru import LruAger, starts_active
from damond.backend.simulated.memory import Chunk, Pattern
from damond.backend.simulated.migration import Migrator, SimScheme
from damond.backend.simulated.regions import Monitor
from damond.backend.simulated.space import AddressSpace
from damond.backend.simulated.workload import WorkloadMeter
from damond.config import SimulationConfig
from damond.model import damon as model
from damond.model.measurement import MemoryReadings


class SimMachine:
    """The machine; :meth:`advance_to` runs every context's aggregations up to a time."""

    def __init__(self, cfg: SimulationConfig) -> None:
        self.cfg = cfg
        self.t = 0.0
        self.rng = random.Random(cfg.seed)
        self.chunks: list[Chunk] = []
        self.schemes: dict[str, SimScheme] = {}
        self._pending_shifts = sorted(cfg.shifts, key=lambda s: s.at_s)
        self._pending_phases = cfg.set_phases
        self._rates = {s.name: s.access_rate for s in cfg.sets}
        self._placements = {s.name: s.placement for s in cfg.sets}
        self._turn = 0
        self._due: list[tuple[float, int, SimScheme]] = []
        """Each running context's next aggregation, earliest first."""
        self._seq = itertools.count()
        self.min_region_frames = max(
            1, (cfg.min_region_bytes or cfg.chunk_bytes) // cfg.chunk_bytes
        )
        starting = self._starting_nodes()
        frames = {
            n.id: max(
                n.capacity_bytes // cfg.chunk_bytes, sum(1 for _, node in starting if node == n.id)
            )
            for n in cfg.nodes
        }
        self.space = AddressSpace(frames, cfg.chunk_bytes)
        self.mover = Migrator(cfg, self.space, self.rng)
        self.capacity = self.mover.capacity
        self.used = self.mover.used
        self.by_node = self.mover.by_node
        self.meter = WorkloadMeter(cfg)
        self.lru = LruAger(cfg.seed)
        for set_name, node in starting:
            self._put(Chunk(node, cfg.chunk_bytes, self._rates[set_name], set_name), node)

    @property
    def migrated_bytes(self) -> int:
        return self.mover.migrated_bytes

    @property
    def pingpong_bytes(self) -> int:
        return self.mover.pingpong_bytes

    @property
    def flows(self) -> dict[tuple[int, int, str], int]:
        return self.mover.flows

    # --- memory ------------------------------------------------------------

    def _order(self, set_name: str) -> list[int]:
        nodes = sorted(n.id for n in self.cfg.nodes)
        placement = self._placements[set_name]
        if placement == "interleave":
            order = [nodes[(self._turn + i) % len(nodes)] for i in range(len(nodes))]
            self._turn += 1
            return order
        return [placement, *(n for n in nodes if n != placement)]

    def _starting_nodes(self) -> list[tuple[str, int]]:
        """Where each starting chunk goes: as its set's placement says, or on a node with
        room; without room anywhere, on its own node beyond its capacity."""
        size = self.cfg.chunk_bytes
        used = {n.id: 0 for n in self.cfg.nodes}
        room = {n.id: n.capacity_bytes for n in self.cfg.nodes}
        out = []
        for mset in self.cfg.sets:
            for _ in range(max(1, mset.bytes // size)):
                order = self._order(mset.name)
                node = next((n for n in order if room[n] - used[n] >= size), order[0])
                used[node] += size
                out.append((mset.name, node))
        return out

    def _put(self, c: Chunk, node: int) -> None:
        c.active = starts_active(c)
        self.space.place(c, node)
        self.chunks.append(c)
        self.by_node[node].append(c)
        self.used[node] += c.size

    def _add_chunk(self, set_name: str) -> bool:
        """Place one chunk of ``set_name`` as its placement says, or on a node with room
        (False: no room anywhere)."""
        size = self.cfg.chunk_bytes
        node = next((n for n in self._order(set_name) if self.mover.has_room(n, size)), None)
        if node is None:
            return False
        self._put(Chunk(node, size, self._rates[set_name], set_name), node)
        return True

    def _remove_chunk(self, c: Chunk) -> None:
        self.space.remove(c)
        self.chunks.remove(c)
        self.by_node[c.node].remove(c)
        self.used[c.node] -= c.size

    # --- schemes -----------------------------------------------------------

    def add_scheme(self, ctx: model.Context) -> SimScheme:
        scheme = ctx.schemes[0]
        pattern = scheme.access_pattern
        monitor = Monitor(
            self.space,
            ctx.intervals.samples_per_aggr,
            ctx.intervals.aggr_us / 1e6,
            (self.cfg.nr_regions_min, self.cfg.nr_regions_max),
            self.min_region_frames,
            self.cfg.age_reset_share,
        )
        sim = SimScheme(
            name=ctx.name,
            source=ctx.nodes[0],
            dest=scheme.target_nid,
            action=scheme.action,
            pattern=Pattern(
                nr_min=pattern.nr_accesses_min,
                nr_max=pattern.nr_accesses_max,
                age_min=pattern.age_min,
                age_max=pattern.age_max,
            ),
            weights=scheme.quota.weights,
            quota_bytes=scheme.quota.bytes,
            reset_interval_s=scheme.quota.reset_interval_ms / 1000,
            goals=list(scheme.quota.goals),
            tuner=scheme.quota.goal_tuner,
            monitor=monitor,
            passes=PageSelector(scheme.filters, self.cfg, self.space.frame_bytes).allows,
            measure=lambda goal: self.meter.goal_current(ctx.name, goal, self.memory()),
        )
        self.schemes[ctx.name] = sim
        heapq.heappush(self._due, (self.t + self._period(monitor), next(self._seq), sim))
        return sim

    def remove_scheme(self, name: str) -> None:
        self.schemes.pop(name, None)

    def memory(self) -> MemoryReadings:
        """The machine's memory readings now (:mod:`.workload`)."""
        return self.meter.readings(self.capacity, self.used, self.by_node)

    def eligible_bytes(self, scheme: SimScheme) -> Mapping[int, int]:
        """Bytes per node in the regions of ``scheme``'s context that match its pattern at
        its last aggregation; callers must not change the mapping."""
        return scheme.monitor.eligible(scheme.pattern)

    def steady_eligible(self, scheme: SimScheme) -> dict[int, int]:
        """Bytes per node whose true access rate matches ``scheme``'s pattern (age aside):
        what a noise-free monitor reports once every chunk has been sampled and has aged
        (free memory included, as DAMON sees it), the ground truth benchmarks' oracles
        start from."""
        pattern, samples = scheme.pattern, scheme.monitor.samples
        # free memory is never accessed: a pattern that takes unaccessed regions sees it
        free_seen = pattern.nr_min <= 0
        out = dict.fromkeys(self.by_node, 0)
        for node, chunks in self.by_node.items():
            out[node] = sum(
                c.size for c in chunks if pattern.nr_min <= c.rate * samples <= pattern.nr_max
            )
            if free_seen:
                out[node] += self.space.free_frames(node) * self.cfg.chunk_bytes
        return out

    def goal_current(self, scheme: SimScheme, goal: model.QuotaGoal) -> int:
        return scheme.goal_current(goal)

    # --- time --------------------------------------------------------------

    def _period(self, monitor: Monitor) -> float:
        jitter = self.cfg.clock_jitter
        return monitor.aggr_s * (1.0 + self.rng.uniform(-jitter, jitter))

    def advance_to(self, t: float) -> None:
        due = self._due
        while due and due[0][0] <= t + 1e-9:
            at, _, scheme = heapq.heappop(due)
            if self.schemes.get(scheme.name) is not scheme:
                continue
            self.meter.accrue(self.by_node, at)
            self.lru.age_to(self.chunks, at)
            self.t = max(self.t, at)
            self._apply_workload()
            free_at = self._aggregate(scheme)
            heapq.heappush(due, (free_at + self._period(scheme.monitor), next(self._seq), scheme))
        self.meter.accrue(self.by_node, t)
        self.lru.age_to(self.chunks, t)
        self.t = max(self.t, t)
        self._apply_workload()

    def _aggregate(self, scheme: SimScheme) -> float:
        """One aggregation of ``scheme``'s context; returns when its kdamond is free."""
        mon = scheme.monitor
        mon.aggregations += 1
        mon.last_t = self.t
        self.space.settle(self.t)
        mon.sample(self.rng)
        mon.merge()
        self.mover.adjust_quota(scheme, self.t)
        free_at = self.mover.apply(scheme, self.t)
        mon.keep_view()
        scheme.record_view()
        mon.reset_and_split(self.rng)
        return free_at

    def _apply_workload(self) -> None:
        self._apply_shifts()
        self._apply_phases()

    def _apply_shifts(self) -> None:
        while self._pending_shifts and self._pending_shifts[0].at_s <= self.t:
            shift = self._pending_shifts.pop(0)
            src = [c for c in self.chunks if c.set_name == shift.from_set]
            dst = [c for c in self.chunks if c.set_name == shift.to_set]
            count = min(len(dst), round(len(src) * shift.fraction))
            for a, b in zip(self.rng.sample(src, count), self.rng.sample(dst, count), strict=True):
                a.rate, b.rate = b.rate, a.rate
                a.set_name, b.set_name = b.set_name, a.set_name
                self.space.rate_changed(a)
                self.space.rate_changed(b)

    def _apply_phases(self) -> None:
        """Grow or shrink sets whose phase is due (growth stops when the machine is full)."""
        while self._pending_phases and self._pending_phases[0].at_s <= self.t:
            phase = self._pending_phases.pop(0)
            members = [c for c in self.chunks if c.set_name == phase.set]
            change = phase.bytes // self.cfg.chunk_bytes - len(members)
            for _ in range(change):
                if not self._add_chunk(phase.set):
                    break
            if change < 0:
                for c in self.rng.sample(members, -change):
                    self._remove_chunk(c)
