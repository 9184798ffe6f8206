"""damond's own quota controller (``daemon`` mode): small, bounded, direction-aware.

Each iteration it turns the goal error into the bytes the scheme should move
next, and sets that as the size quota:

- **direction**: a scheme that moves pages *into* the goal node raises the
  metric, one that moves them *out* lowers it; the scheme acts only when its
  direction reduces the error, and is idle otherwise;
- **dead band**: no action while the error is within ``deadband_bp``;
- **bounded steps**: the quota moves a ``gain`` fraction of the remaining gap
  per iteration, is capped by the scheme's ``max_bytes``, may at most double
  (plus a floor) from one iteration to the next, and may drop at once;
- **lag compensation**: bytes this scheme migrated within the last ``lag_s``
  are counted at their destination even though DAMON does not see them as hot
  there yet, so the loop does not keep pushing while the effect is in flight.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from damond.config import ContextConfig
from damond.control.goalmetric import bytes_per_bp, goal_value_bp
from damond.model import damon as model
from damond.model.units import MiB

STEP_FLOOR_BYTES = 32 * MiB
"""The quota may grow to at least this in one iteration, starting from idle."""


def default_lag_s(ctx: ContextConfig) -> float:
    """Time until migrated pages look hot again: one aggregation to be sampled,
    one for the age reset that follows, then ``age_min`` aggregations."""
    if ctx.controller.lag_s is not None:
        return ctx.controller.lag_s
    aggr_s = ctx.intervals.aggr_us / 1e6
    return (ctx.scheme.access_pattern.age_min + 2) * aggr_s


@dataclass(frozen=True, slots=True)
class Decision:
    metric_bp: int
    """The goal metric as measured."""
    predicted_bp: int
    """The metric once in-flight migrations become visible."""
    demand_bytes: int
    """Bytes the scheme should still move towards the goal (0: nothing to do)."""
    quota_bytes: int
    """The size quota to set for the next reset interval."""
    inflight_bytes: int


class DaemonController:
    """One context's controller; keeps only its own small state."""

    def __init__(self, ctx: ContextConfig, interval_s: float) -> None:
        self.ctx = ctx
        self.interval_s = interval_s
        self.lag_s = default_lag_s(ctx)
        self._recent: deque[tuple[float, int]] = deque()
        self._last_applied: int | None = None
        self._last_quota = model.IDLE_QUOTA_BYTES

    def reconfigure(self, ctx: ContextConfig) -> None:
        self.ctx = ctx
        self.lag_s = default_lag_s(ctx)

    def note_applied(self, now_s: float, applied_total: int) -> None:
        """Record the scheme's cumulative ``sz_applied`` counter."""
        if self._last_applied is not None and applied_total >= self._last_applied:
            delta = applied_total - self._last_applied
            if delta:
                self._recent.append((now_s, delta))
        self._last_applied = applied_total
        while self._recent and self._recent[0][0] <= now_s - self.lag_s:
            self._recent.popleft()

    @property
    def inflight_bytes(self) -> int:
        return sum(b for _, b in self._recent)

    def decide(
        self,
        eligible_by_node: Mapping[int, int],
        capacity_by_node: Mapping[int, int],
    ) -> Decision:
        ctx = self.ctx
        goal = ctx.goal
        metric = goal_value_bp(goal.metric, goal.nid, eligible_by_node, capacity_by_node)
        inflight = self.inflight_bytes
        predicted_eligible = dict(eligible_by_node)
        dest = ctx.scheme.target_nid
        predicted_eligible[dest] = predicted_eligible.get(dest, 0) + inflight
        predicted = goal_value_bp(goal.metric, goal.nid, predicted_eligible, capacity_by_node)

        sign = 1 if ctx.direction is model.Direction.RAISES else -1
        gap_bp = sign * (goal.target_bp - predicted)
        per_bp = bytes_per_bp(goal.metric, goal.nid, predicted_eligible, capacity_by_node)
        if gap_bp <= ctx.controller.deadband_bp or per_bp <= 0 or not ctx.enabled:
            self._last_quota = model.IDLE_QUOTA_BYTES
            return Decision(metric, predicted, 0, model.IDLE_QUOTA_BYTES, inflight)

        demand = int(gap_bp * per_bp)
        windows = max(1.0, self.interval_s / (ctx.scheme.quota.reset_interval_ms / 1000))
        wanted = int(demand * ctx.controller.gain / windows)
        ceiling = max(2 * self._last_quota, STEP_FLOOR_BYTES)
        quota = max(model.IDLE_QUOTA_BYTES, min(wanted, ceiling, ctx.scheme.quota.max_bytes))
        self._last_quota = quota
        return Decision(metric, predicted, demand, quota, inflight)

    def hold(self) -> None:
        """Forget the ramp: the next action starts again from the step floor."""
        self._last_quota = model.IDLE_QUOTA_BYTES
