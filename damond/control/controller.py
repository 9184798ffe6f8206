"""damond's own quota controller (``daemon`` mode): small, bounded, direction-aware.

Each iteration the coordinator (:mod:`damond.control.coordinator`) tells it how
many bytes its scheme should still move (its share of its goal's gap, beyond the
dead band, in the direction its scheme moves the metric), and it sets the size
quota from that:

- **steps sized from the gap**: the demand is already net of every sharing
  context's bytes in flight, so the quota moves all of it but one measurement
  step at once (a big known gap closes in one detection lag plus its bytes over
  the quota rate), and corrects what is left, or a gap within one step of the
  target (which sampling noise alone may explain), by a ``gain`` fraction per
  iteration, from the measured response; the scheme's ``max_bytes`` caps it;
- **lag compensation**: it tells the coordinator the bytes its scheme migrated
  within the last ``lag_s``, which DAMON does not see at their destination yet,
  so that no context of the goal keeps pushing while the effect is in flight.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from damond.config import ContextConfig
from damond.model import damon as model
from damond.model.measurement import SchemeStats


def default_lag_s(ctx: ContextConfig) -> float:
    """Time until migrated pages look hot again: one aggregation to be sampled,
    one for the age reset that follows, then ``age_min`` aggregations, and one more for
    the migrations: a kdamond monitors again only once the pages it migrates have moved,
    so while it moves a quota each aggregation its aggregations come late (at 512 MiB
    and 1 GiB/s, by half of one each)."""
    if ctx.controller.lag_s is not None:
        return ctx.controller.lag_s
    aggr_s = ctx.intervals.aggr_us / 1e6
    return (ctx.scheme.access_pattern.age_min + 3) * aggr_s


class DaemonController:
    """One context's controller; keeps only its own small state."""

    def __init__(self, ctx: ContextConfig, interval_s: float) -> None:
        self.ctx = ctx
        self.interval_s = interval_s
        self.lag_s = default_lag_s(ctx)
        self._recent: deque[tuple[float, int]] = deque()
        self._last_applied: int | None = None
        self._reading: dict[int, int] | None = None
        self._reading_s = 0.0
        self._applied_at_reading: int | None = None
        self._stats_at_reading: SchemeStats | None = None
        self._granted_since_reading = False

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

    def reading_is_stale(
        self, now_s: float, eligible_bytes: Mapping[int, int], stats: SchemeStats
    ) -> bool:
        """Whether this reading is an old one again, not a new measurement: it has
        repeated exactly for ``lag_s`` or longer though the scheme moved memory since, or
        was given a quota since while its statistics have not changed at all (a busy
        kdamond, migrating, refreshes none of its statistics for seconds under TCG). A
        quota sized from it again would move the same gap twice: its moves are unseen,
        and out of the in-flight count or never in it. Call after :meth:`note_applied`."""
        reading = dict(eligible_bytes)
        if reading != self._reading:
            self._reading, self._reading_s = reading, now_s
            self._applied_at_reading = self._last_applied
            self._stats_at_reading = stats
            self._granted_since_reading = False
            return False
        if now_s - self._reading_s < self.lag_s:
            return False
        if self._last_applied != self._applied_at_reading:
            return True
        return self._granted_since_reading and stats == self._stats_at_reading

    def note_granted(self, quota_bytes: int) -> None:
        """Record the size quota just set: a reading that repeats after it is stale."""
        if quota_bytes > model.IDLE_QUOTA_BYTES:
            self._granted_since_reading = True

    @property
    def inflight_bytes(self) -> int:
        return sum(b for _, b in self._recent)

    @property
    def inflight_moves(self) -> tuple[tuple[float, int], ...]:
        """The bytes in flight as ``(time_s, bytes)``: when each batch was seen moved."""
        return tuple(self._recent)

    def quota_for(self, demand_bytes: int, resolution_bytes: int = 0) -> int:
        """The size quota for the next reset interval, to move ``demand_bytes`` (this
        context's share of its goal's gap net of what is in flight, from the coordinator).

        All of the demand but one measurement step (``resolution_bytes``: a reading may
        be that far off from sampling noise alone) is moved at once; what is left, or a
        demand no larger than a step, by a ``gain`` fraction per iteration, so that a
        reading one noisy region off is corrected gently. Capped by ``max_bytes``."""
        ctx = self.ctx
        if demand_bytes <= 0 or not ctx.enabled:
            return model.IDLE_QUOTA_BYTES
        windows = max(1.0, self.interval_s / (ctx.scheme.quota.reset_interval_ms / 1000))
        step = max(demand_bytes - resolution_bytes, int(demand_bytes * ctx.controller.gain))
        return max(model.IDLE_QUOTA_BYTES, min(int(step / windows), ctx.scheme.quota.max_bytes))
