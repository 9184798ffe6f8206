"""A context's goal as its snapshot shows it: the value, and what the plan steers it by.

The node-share metrics come from DAMON's eligible bytes; the metrics of the machine's
memory from ``Snapshot.memory`` (:mod:`damond.control.workload`), which sees a move at
once, so nothing of them is in flight; stall is one value with no node to move bytes
to, so a move's size is estimated from it (:attr:`GoalView.unit_bytes`); the active
(inactive) share is one value of the whole machine too, of which one basis point is a
ten-thousandth of the LRU memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from damond.config import ContextConfig
from damond.control import workload
from damond.control.goalmetric import bytes_per_bp, goal_value_bp
from damond.model import damon as model
from damond.model.measurement import MemoryReadings, Snapshot
from damond.model.units import BP_SCALE

M = model.GoalMetric


@dataclass(frozen=True, slots=True)
class GoalView:
    value: int | None
    """The metric in its own unit (basis points, or stall microseconds per reset
    interval); None until it can be measured."""
    quantity: Mapping[int, int]
    """Bytes per node the plan counts the goal from (eligible memory, used memory or
    the cgroup's memory)."""
    totals: Mapping[int, int]
    per_unit: float
    """Bytes moved into or out of the goal's node per unit of the metric (0: unknown)."""
    movable: int | None = None
    reading: int | None = None
    """The value, for a goal the plan cannot count from bytes per node (stall)."""
    unit_bytes: float = 0.0
    seen_at_once: bool = False
    """Whether a move shows in the next value at once (no bytes in flight)."""
    problem: str | None = None
    """Why there is no value (readings the backend could not take)."""


class GoalReader:
    """Reads one context's goal; keeps the last stall total, as the kernel does."""

    def __init__(self) -> None:
        self._psi_last: tuple[float, int] | None = None

    def read(self, ctx: ContextConfig, snap: Snapshot) -> GoalView:
        goal = ctx.goal
        metric = M(goal.metric)
        eligible, capacity = snap.eligible_bytes, snap.capacity_bytes
        if metric in workload.SHARE_METRICS:
            value = goal_value_bp(metric, goal.nid, eligible, capacity)
            per_bp = bytes_per_bp(metric, goal.nid, eligible, capacity)
            return GoalView(value, eligible, capacity, per_bp)
        memory = snap.memory
        missing = _missing(metric, goal.nid, goal.path, memory)
        if memory is None or missing is not None:
            return GoalView(None, {}, {}, 0.0, movable=0, problem=missing)
        source_eligible = eligible.get(ctx.node, 0)
        movable = workload.movable_bytes(ctx, source_eligible, memory)
        if metric is M.SOME_MEM_PSI_US:
            last, self._psi_last = self._psi_last, (snap.time_s, memory.psi_some_total_us)
            reset_s = ctx.scheme.quota.reset_interval_ms / 1000
            psi = workload.psi_per_interval(last, snap.time_s, memory.psi_some_total_us, reset_s)
            # the stall comes from the memory on the slower side: moving a part of it
            # moves about that part of the stall (a first estimate, corrected each time)
            unit = movable / max(psi or 0, 1) if psi is not None else 0.0
            return GoalView(psi, {}, {}, unit, movable, psi, unit, seen_at_once=True)
        value = workload.memory_value(metric, goal.nid, goal.path, memory)
        if metric in workload.LRU_METRICS:  # one value of the machine, as the active one
            active = workload.canonical_bp(metric, value)
            per_bp = (memory.active_bytes + memory.inactive_bytes) / BP_SCALE
            return GoalView(value, {}, {}, per_bp, movable, active, per_bp, seen_at_once=True)
        totals = memory.node_total_bytes
        quantity = workload.node_amounts(metric, goal.path, memory)
        per_bp = totals.get(goal.nid, 0) / BP_SCALE
        return GoalView(value, quantity, totals, per_bp, movable, seen_at_once=True)


def _missing(metric: M, nid: int, path: str, memory: MemoryReadings | None) -> str | None:
    """What a metric needs that the readings lack, None if they have it all."""
    if memory is None:
        return "the backend took no memory readings"
    problems = "; ".join(getattr(memory, "problems", ()))
    why = f" ({problems})" if problems else ""
    if metric.takes_nid and nid not in memory.node_total_bytes:
        return f"no reading of node {nid}'s memory{why}"
    if metric.takes_path and path not in memory.memcg_node_bytes:
        return f"no reading of cgroup {path}'s memory{why}"
    return None
