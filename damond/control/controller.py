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
  within ``lag_s`` of the reading (learnt when not configured), which DAMON does
  not see at their destination yet, so that no context of the goal keeps pushing
  while the effect is in flight;
- **confirmed readings**: the part of a gap that only the latest reading shows is
  left until a second one confirms it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from damond.config import ContextConfig
from damond.model import damon as model
from damond.model.measurement import SchemeStats

LAGS_KEPT = 3
"""Lags seen recently that the in-flight window covers (the longest of them)."""


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


def least_lag_s(ctx: ContextConfig) -> float:
    """The shortest time a learned lag may be: one sampling, ``age_min`` aggregations,
    and one more in which the pages are counted."""
    return (ctx.scheme.access_pattern.age_min + 2) * ctx.intervals.aggr_us / 1e6


class DaemonController:
    """One context's controller; keeps only its own small state."""

    def __init__(self, ctx: ContextConfig, interval_s: float) -> None:
        self.ctx = ctx
        self.interval_s = interval_s
        self.lag_s = default_lag_s(ctx)
        self._recent: deque[tuple[float, int]] = deque()
        self._watch: tuple[float, int, int | None] | None = None
        """A batch moved after a quiet spell: ``(time_s, bytes, destination bytes then)``."""
        self._observed: deque[float] = deque(maxlen=LAGS_KEPT)
        self._values: deque[tuple[float, int]] = deque()
        """The goal's values within :attr:`confirm_s`, as ``(time_s, value_bp)``."""
        self._last_applied: int | None = None
        self._reading: dict[int, int] | None = None
        self._reading_s: float | None = None
        self._applied_at_reading: int | None = None
        self._stats_at_reading: SchemeStats | None = None
        self._granted_since_reading = False

    def reconfigure(self, ctx: ContextConfig) -> None:
        if ctx.intervals != self.ctx.intervals or ctx.scheme != self.ctx.scheme:
            self._observed.clear()
        self.ctx = ctx
        self.lag_s = default_lag_s(ctx)

    @property
    def window_s(self) -> float:
        """How long a batch counts as in flight: ``lag_s`` when configured, else the
        longest of the last lags seen, within :func:`least_lag_s` and
        :func:`default_lag_s` (where moved pages land decides how long DAMON takes to
        see them: beside hot regions of the destination, or inside idle ones that must
        split and age first)."""
        if self.ctx.controller.lag_s is not None or not self._observed:
            return self.lag_s
        return min(self.lag_s, max(least_lag_s(self.ctx), max(self._observed)))

    def note_applied(self, now_s: float, applied_total: int) -> None:
        """Record the scheme's cumulative ``sz_applied`` counter."""
        if self._last_applied is not None and applied_total >= self._last_applied:
            delta = applied_total - self._last_applied
            if delta:
                if not self._recent and self._watch is None:
                    self._watch = (now_s, delta, None)
                self._recent.append((now_s, delta))
        self._last_applied = applied_total
        self._forget_seen(now_s)

    def _forget_seen(self, now_s: float) -> None:
        """Drop the batches the latest reading sees: those moved ``window_s`` before it
        was first seen (a reading repeated since sees no batch moved after that)."""
        seen_s = now_s if self._reading_s is None else min(now_s, self._reading_s)
        while self._recent and self._recent[0][0] <= seen_s - self.window_s:
            self._recent.popleft()

    def note_seen(self, now_s: float, dest_bytes: int | None, step_bytes: int) -> None:
        """Learn the lag from the one view of the destination: the time from a batch
        moved after a quiet spell until the destination shows it (all of it but a step or
        a quarter, whichever is more). A batch under two steps, which noise alone could
        show, teaches nothing."""
        if self._watch is None:
            return
        moved_s, size, base = self._watch
        if dest_bytes is None or size < 2 * step_bytes:
            self._watch = None
        elif base is None:
            self._watch = (moved_s, size, dest_bytes)
        elif dest_bytes - base >= size - max(step_bytes, size // 4):
            self._observed.append(now_s - moved_s)
            self._watch = None
        elif now_s - moved_s >= self.lag_s:
            self._observed.append(self.lag_s)
            self._watch = None

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
            self._forget_seen(now_s)
            return False
        if self._reading_s is None or now_s - self._reading_s < self.lag_s:
            return False
        if self._last_applied != self._applied_at_reading:
            return True
        return self._granted_since_reading and stats == self._stats_at_reading

    @property
    def confirm_s(self) -> float:
        """How far back a reading confirms the next one: an iteration, or an aggregation
        when that is longer (readings within one are the same measurement)."""
        return max(self.interval_s, self.ctx.intervals.aggr_us / 1e6)

    def unconfirmed_bp(self, now_s: float, value_bp: int, raises: bool) -> int:
        """How much further from the target ``value_bp`` is than the reading before it
        (within :attr:`confirm_s`), in the direction this context moves the goal. A
        single reading can be off by far more than a step (under TCG a kdamond read a
        steady node 560 bp below its pages' share); the part of a gap that no earlier
        reading shows is acted on once a second one confirms it."""
        while self._values and self._values[0][0] < now_s - self.confirm_s - 1e-9:
            self._values.popleft()
        before = [v for t, v in self._values if t < now_s]
        self._values.append((now_s, value_bp))
        if not before:
            return 0
        nearest = max(before) if raises else min(before)
        return max(0, (nearest - value_bp) if raises else (value_bp - nearest))

    def note_granted(self, quota_bytes: int) -> None:
        """Record the size quota just set: a reading that repeats after it is stale."""
        if quota_bytes > model.IDLE_QUOTA_BYTES:
            self._granted_since_reading = True

    @property
    def reading_s(self) -> float | None:
        """When the latest reading was first seen (None: no reading yet)."""
        return self._reading_s

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
