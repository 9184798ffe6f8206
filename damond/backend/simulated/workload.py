"""The simulated machine's memory readings: node totals and free memory, each cgroup's
memory per node, the LRU lists and the memory stall, and the goal metrics of them as
a kernel computes them for its own tuner (``native`` and ``kernel`` modes).

Stall: a chunk of access rate ``r`` gets ``r * accesses_per_gib_s`` accesses per second
per GiB; each access to a node slower than the fastest stalls for the difference of
the nodes' ``latency_ns``; the "some" stall total grows by the sum, at most the time
that passed (some task stalls at most all the time). A cgroup's memory counts its
descendants' (as ``memory.numa_stat`` does); the LRU lists are the chunks' (:mod:`.lru`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from damond.backend.simulated.memory import Chunk
from damond.config import SimulationConfig
from damond.control import workload
from damond.control.tiers import Tiers
from damond.model import damon as model
from damond.model.measurement import MemoryReadings
from damond.model.units import GiB

DRAM_LATENCY_NS = 100
TIER_LATENCY_NS = 150
"""What each tier below DRAM adds to a node's latency when it has none configured."""


def latencies(cfg: SimulationConfig) -> dict[int, int]:
    """Each node's access latency, nanoseconds."""
    tiers = Tiers.of_simulation(cfg).tier_by_node
    return {
        n.id: n.latency_ns or DRAM_LATENCY_NS + TIER_LATENCY_NS * tiers[n.id] for n in cfg.nodes
    }


def _ancestors(path: str) -> list[str]:
    """``/a/b`` -> ``/``, ``/a``, ``/a/b``: the cgroups whose memory counts its pages."""
    parts = [p for p in path.split("/") if p]
    return ["/", *("/" + "/".join(parts[: i + 1]) for i in range(len(parts)))]


class WorkloadMeter:
    """Keeps the stall total as time passes and reads the machine's memory state."""

    def __init__(self, cfg: SimulationConfig) -> None:
        lat = latencies(cfg)
        fastest = min(lat.values(), default=0)
        self._stall_ns = {n: ns - fastest for n, ns in lat.items() if ns > fastest}
        """Stall per access of each node slower than the fastest."""
        self._per_byte = cfg.accesses_per_gib_s / GiB
        self._cgroups = {s.name: _ancestors(s.cgroup) for s in cfg.sets}
        self.stall_us = 0.0
        self._t = 0.0
        self._last_goal_total: dict[tuple[str, str], float] = {}

    def stall_us_per_s(self, by_node: Mapping[int, Sequence[Chunk]]) -> float:
        """The stall the placement causes now, microseconds per second."""
        ns = sum(
            extra * sum(c.rate * c.size for c in by_node.get(node, ()))
            for node, extra in self._stall_ns.items()
        )
        return min(1e6, ns * self._per_byte / 1000)

    def accrue(self, by_node: Mapping[int, Sequence[Chunk]], t: float) -> None:
        """Add the stall from the last call until ``t``, the placement unchanged since."""
        if t > self._t:
            if self._stall_ns:
                self.stall_us += self.stall_us_per_s(by_node) * (t - self._t)
            self._t = t

    def readings(
        self,
        capacity: Mapping[int, int],
        used: Mapping[int, int],
        by_node: Mapping[int, Sequence[Chunk]],
    ) -> MemoryReadings:
        memcg: dict[str, dict[int, int]] = {}
        active = inactive = 0
        for node, chunks in by_node.items():
            for c in chunks:
                for path in self._cgroups.get(c.set_name, ["/"]):
                    per_node = memcg.setdefault(path, dict.fromkeys(capacity, 0))
                    per_node[node] += c.size
                if c.active:
                    active += c.size
                else:
                    inactive += c.size
        for paths in self._cgroups.values():
            for path in paths:
                memcg.setdefault(path, dict.fromkeys(capacity, 0))
        return MemoryReadings(
            node_total_bytes=dict(capacity),
            node_free_bytes={n: max(0, capacity[n] - used.get(n, 0)) for n in capacity},
            memcg_node_bytes=memcg,
            active_bytes=active,
            inactive_bytes=inactive,
            psi_some_total_us=int(self.stall_us),
        )

    def goal_current(self, scheme_name: str, goal: model.QuotaGoal, memory: MemoryReadings) -> int:
        """A goal's current value as the kernel computes it at a quota reset: the memory
        metrics from the readings, stall as its growth since the scheme last asked."""
        if goal.metric is model.GoalMetric.SOME_MEM_PSI_US:
            key = (scheme_name, goal.metric.value)
            last = self._last_goal_total.get(key, self.stall_us)
            self._last_goal_total[key] = self.stall_us
            return int(self.stall_us - last)
        return workload.memory_value(goal.metric, goal.nid, goal.path, memory)
