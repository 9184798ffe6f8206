"""The simulated backend: DAMON on a :class:`~damond.backend.simulated.machine.SimMachine`.

The machine is advanced lazily to the backend's clock on every call, so the
same backend serves ``damond run`` (wall-clock time) and ``damond simulate``
(a virtual clock driven as fast as the CPU allows).
"""

from __future__ import annotations

import asyncio
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType

from damond.backend.simulated.machine import SimMachine, SimScheme
from damond.config import ContextConfig, SimulationConfig
from damond.control.tiers import Tiers
from damond.model import damon as model
from damond.model.errors import BackendError
from damond.model.measurement import Snapshot

PAGE_BYTES = 4096

SIMULATED_FEATURES: Mapping[str, bool] = {
    "goal_nid": True,
    "goal_tuner": True,
    "node_eligible_mem_bp": True,
    "effective_bytes": True,
    "nr_snapshots": True,
}


def machine_step(contexts: Sequence[ContextConfig]) -> tuple[float, int]:
    """The machine's aggregation step and samples per step: the finest context's."""
    if not contexts:
        return 1.0, 20
    finest = min(contexts, key=lambda c: c.intervals.aggr_us)
    step_s = finest.intervals.aggr_us / 1e6
    return step_s, max(1, finest.intervals.aggr_us // finest.intervals.sample_us)


class SimBackend:
    name = "simulated"

    def __init__(
        self,
        cfg: SimulationConfig,
        contexts: Sequence[ContextConfig],
        clock: Callable[[], float],
    ) -> None:
        step_s, samples = machine_step(contexts)
        self.machine = SimMachine(cfg, step_s, samples)
        self._tiers = MappingProxyType(Tiers.of_simulation(cfg).tier_by_node)
        self._capacity = MappingProxyType(self.machine.capacity)
        """Every snapshot's capacities: a read-only view, as they never change."""
        self._clock = clock
        self._faults = cfg.faults
        self._fault_left = [f.count for f in cfg.faults]

    async def _injected_fault(self, name: str) -> None:
        for i, fault in enumerate(self._faults):
            if fault.context != name or self.machine.t < fault.at_s:
                continue
            if fault.kind == "hang":
                await asyncio.Event().wait()
            if self._fault_left[i] > 0:
                self._fault_left[i] -= 1
                raise BackendError(f"context {name}: injected fault at {self.machine.t:.0f} s")

    async def open(self) -> None:
        self._advance()

    async def close(self) -> None:
        self.machine.schemes.clear()

    def features(self) -> Mapping[str, bool]:
        return SIMULATED_FEATURES

    def kernel_version(self) -> str:
        return f"simulated ({platform.release()})"

    def tiering_counters(self) -> Mapping[str, int]:
        """The simulated machine's own migrations (never the host's counters)."""
        return {"numa_pages_migrated": self.machine.migrated_bytes // PAGE_BYTES}

    async def tiers(self) -> Mapping[int, int]:
        return self._tiers

    def _advance(self) -> None:
        self.machine.advance_to(self._clock())

    async def start_context(self, ctx: model.Context) -> None:
        self._advance()
        for node in (*ctx.nodes, ctx.schemes[0].target_nid):
            if node not in self.machine.capacity:
                raise BackendError(f"context {ctx.name}: node {node} does not exist")
        self.machine.add_scheme(ctx)

    async def stop_context(self, name: str) -> None:
        self.machine.remove_scheme(name)

    async def snapshot(self, name: str) -> Snapshot:
        self._advance()
        await self._injected_fault(name)
        scheme = self._get(name)
        return Snapshot(
            time_s=self.machine.t,
            eligible_bytes=self.machine.eligible_bytes(scheme.pattern),
            capacity_bytes=self._capacity,
            stats=scheme.stats,
            quota_bytes=scheme.quota_bytes,
            effective_quota_bytes=min(scheme.esz, 2**64 - 1),
            running=True,
        )

    async def set_quota(self, name: str, quota_bytes: int) -> None:
        self._get(name).quota_bytes = quota_bytes

    async def feed_goal(self, name: str, current_value: int, target_value: int) -> None:
        scheme = self._get(name)
        scheme.goals = [
            replace(g, target_value=target_value, current_value=current_value)
            if g.metric is model.GoalMetric.USER_INPUT
            else replace(g, target_value=target_value)
            for g in scheme.goals
        ]

    def _get(self, name: str) -> SimScheme:
        try:
            return self.machine.schemes[name]
        except KeyError:
            raise BackendError(f"context {name} is not running") from None
