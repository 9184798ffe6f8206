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

from damond.backend.simulated.machine import SimMachine
from damond.backend.simulated.migration import SimScheme
from damond.backend.sysfs.eligible import CounterWindow
from damond.config import ContextConfig, SimulationConfig
from damond.control.tiers import Tiers
from damond.model import damon as model
from damond.model.errors import BackendError
from damond.model.measurement import Snapshot

PAGE_BYTES = 4096

SIMULATED_FEATURES: Mapping[str, bool] = {
    "goal_nid": True,
    "goal_tuner": True,
    "effective_bytes": True,
    "nr_snapshots": True,
    # the simulated machine computes every goal metric itself, as a kernel would
    **{m.value: True for m in model.GoalMetric if m is not model.GoalMetric.USER_INPUT},
}


class SimBackend:
    name = "simulated"

    def __init__(
        self,
        cfg: SimulationConfig,
        contexts: Sequence[ContextConfig],
        clock: Callable[[], float],
    ) -> None:
        self.machine = SimMachine(cfg)
        self._tiers = MappingProxyType(Tiers.of_simulation(cfg).tier_by_node)
        self._capacity = MappingProxyType(self.machine.capacity)
        """Every snapshot's capacities: a read-only view, as they never change."""
        self._clock = clock
        self._faults = cfg.faults
        self._reads_memory: set[str] = set()
        """Contexts whose goal is computed from memory readings."""
        self._fault_left = [f.count for f in cfg.faults]
        self._windows: dict[str, tuple[SimScheme, dict[int, CounterWindow]]] = {}
        """Each context's measurement windows, per node, with the scheme they read."""

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
            if node >= 0 and node not in self.machine.capacity:  # -1: an lru action
                raise BackendError(f"context {ctx.name}: node {node} does not exist")
        self.machine.add_scheme(ctx)
        if ctx.memory_goal is not None:
            self._reads_memory.add(ctx.name)

    async def stop_context(self, name: str) -> None:
        self.machine.remove_scheme(name)
        self._reads_memory.discard(name)

    async def snapshot(self, name: str) -> Snapshot:
        self._advance()
        await self._injected_fault(name)
        scheme = self._get(name)
        return Snapshot(
            time_s=self.machine.t,
            eligible_bytes=self._measured(scheme),
            capacity_bytes=self._capacity,
            stats=scheme.stats,
            quota_bytes=scheme.quota_bytes,
            effective_quota_bytes=scheme.reported_esz,
            running=True,
            memory=self.machine.memory() if name in self._reads_memory else None,
        )

    def _measured(self, scheme: SimScheme) -> Mapping[int, int]:
        """Eligible bytes as damond reads a 7.0+ kernel's: the ``stat`` schemes' bytes per
        snapshot over the last ``measure_window_s`` (:class:`CounterWindow`), or the last
        view while the window has none."""
        last = self.machine.eligible_bytes(scheme)
        if self.machine.cfg.measure_window_s <= 0:
            return last
        owner, windows = self._windows.get(scheme.name, (None, {}))
        if owner is not scheme:  # a (re)started context reads its own counters afresh
            windows = {}
            self._windows[scheme.name] = (scheme, windows)
        out = {}
        for node, tried in scheme.tried_by_node.items():
            window = windows.setdefault(node, CounterWindow(self.machine.cfg.measure_window_s))
            mean = window.add(self.machine.t, tried, scheme.nr_snapshots)
            out[node] = last[node] if mean is None else mean
        return out or last

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
