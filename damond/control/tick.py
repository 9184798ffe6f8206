"""One context's decision per iteration: from a measurement to what to write.

The runtime measures (``backend.snapshot``), hands the snapshot to
:meth:`ContextControl.tick`, and writes what the returned :class:`Tick` says
(``backend.set_quota`` or ``backend.feed_goal``). Everything between, including
the goal metric (computed once per tick) and the context's report to the
coordinator, is here and pure: no I/O, no asyncio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from damond.config import ContextConfig, Mode
from damond.config.context import step_floor_bp
from damond.control import workload
from damond.control.controller import DaemonController, default_lag_s
from damond.control.coordinator import EPISODE_QUIET_S, Coordinator
from damond.control.goalreading import GoalReader
from damond.control.plan import HELD_UNMEASURED, HELD_UNREACHABLE, Member
from damond.control.translation import (
    build_context,
    kernel_feed,
    kernel_target,
    resting_feed,
)
from damond.model import damon as model
from damond.model.measurement import SchemeStats, Snapshot
from damond.model.units import BP_SCALE

SETTLE_AGGREGATIONS = 10
"""Aggregations a new kdamond's regions take to settle (split and merge to the
workload) before its measurements tell memory classes apart."""


def seen_after_s(ctx: ContextConfig) -> float:
    """The least time from a move until DAMON can see the moved pages at their
    destination again: one sampling, then ``age_min`` aggregations."""
    return (ctx.scheme.access_pattern.age_min + 1) * ctx.intervals.aggr_us / 1e6


def measurement_window_s(ctx: ContextConfig) -> float:
    """Time from a context's start until memory that has been of its class all along
    is seen as such: its regions settle, then its pages age to the pattern's minimum.
    Before that, finding nothing to move proves nothing."""
    return SETTLE_AGGREGATIONS * ctx.intervals.aggr_us / 1e6 + default_lag_s(ctx)


@dataclass(frozen=True, slots=True)
class Notice:
    """A change worth one log line (said once when it starts, not every iteration)."""

    level: Literal["warning", "info"]
    event: str


@dataclass(frozen=True, slots=True)
class Tick:
    metric_bp: int
    """The goal metric: as measured, or in daemon mode the one view of it that every
    context of the goal shares."""
    quota_bytes: int
    """The size quota in force (damond's in daemon mode, the cap otherwise)."""
    write_quota: int | None = None
    """A size quota to write now (daemon mode; None: unchanged)."""
    write_goal: tuple[int, int] | None = None
    """``(current_value, target_value)`` of the goal to write now (None: unchanged)."""
    acting: bool = False
    held: bool = False
    held_reason: str | None = None
    """Why it is held still (:data:`~damond.control.plan.HELD_REASONS`)."""
    notices: tuple[Notice, ...] = ()


class ContextControl:
    """A context's configuration and the state its decisions need, in one place."""

    def __init__(
        self, cfg: ContextConfig, interval_s: float, step_bytes: int | None = None
    ) -> None:
        self.controller = DaemonController(cfg, interval_s)
        self._structure = build_context(cfg, with_targets=False)
        self._quota_written: int | None = None
        self._goal_written: tuple[int, int] | None = None
        self._unreachable_seen_s: float | None = None
        """When the goal was last unreachable: a warning is one per episode."""
        self._failing = False
        self._last_stats: SchemeStats | None = None
        self._started_s: float | None = None
        self.step_bytes = step_bytes
        """The least memory a measurement tells apart (a region); None until known."""
        self._step_known = step_bytes is not None
        self._floor_told = False
        self._reader = GoalReader()
        self._problem_told: str | None = None

    @property
    def cfg(self) -> ContextConfig:
        return self.controller.ctx

    def damon_context(self) -> model.Context:
        """The DAMON context to start; what it starts with counts as written."""
        cfg = self.cfg
        self._structure = build_context(cfg, with_targets=False)
        self._quota_written = None
        self._started_s = None
        native = cfg.mode is Mode.NATIVE
        self._goal_written = (0, kernel_target(cfg)) if native else None
        return build_context(cfg)

    def reconfigure(self, cfg: ContextConfig) -> bool:
        """Take ``cfg`` online; True if its DAMON objects must be rebuilt (restarted)."""
        self.controller.reconfigure(cfg)
        self._goal_written = None
        return build_context(cfg, with_targets=False) != self._structure

    def tick(self, snap: Snapshot, coordinator: Coordinator) -> Tick:
        cfg = self.cfg
        if self._started_s is None:
            self._started_s = snap.time_s
        if cfg.mode is Mode.DAEMON:
            return self._steer(snap, coordinator)
        view = self._reader.read(cfg, snap)
        metric = view.value or 0
        cap = cfg.scheme.quota.max_bytes
        if cfg.mode is Mode.KERNEL:
            fed_at_rest = resting_feed(cfg)
            if fed_at_rest is not None:
                fed = fed_at_rest
            elif view.value is None or (
                cfg.goal.metric in workload.SHARE_METRICS and sum(snap.eligible_bytes.values()) == 0
            ):
                # every share is undefined; feeding 0 would send the tuner to full power
                return Tick(metric, cap)
            else:
                fed = kernel_feed(cfg, metric)
        else:  # native: the kernel measures; only a changed target is written
            fed = (0, kernel_target(cfg))
        if fed == self._goal_written:
            return Tick(metric, cap)
        self._goal_written = fed
        return Tick(metric, cap, write_goal=fed)

    def _learn_step(self, stats: SchemeStats) -> None:
        """Learn the measurement's step when nobody said it: the mean size of the regions
        the scheme moved (DAMON counts, measures and moves memory by regions)."""
        if not self._step_known and stats.nr_applied > 0:
            self.step_bytes = stats.sz_applied // stats.nr_applied

    def _deadband(self, per_bp: float) -> tuple[int, list[Notice]]:
        """The dead band in force, and a notice the first time the configured one is
        raised to what one measurement step resolves."""
        cfg = self.cfg
        configured, unit = cfg.controller.deadband_bp, "bp"
        if cfg.goal.metric == "some_mem_psi_us":  # that share of the target
            configured, unit = -(-cfg.goal.target * configured // BP_SCALE), "us"
        floor = step_floor_bp(self.step_bytes or 0, per_bp)
        if floor <= configured:
            return configured, []
        notices = []
        if not self._floor_told:
            self._floor_told = True
            notices.append(
                Notice(
                    "info",
                    f"dead band raised from {configured} to {floor} {unit}: one measurement step "
                    f"({self.step_bytes} bytes) moves {cfg.goal.metric} of node "
                    f"{cfg.goal.nid} by {floor} {unit}, and a narrower band would trade regions "
                    "back and forth forever",
                )
            )
        return floor, notices

    def _steer(self, snap: Snapshot, coordinator: Coordinator) -> Tick:
        cfg = self.cfg
        goal = cfg.goal
        self.controller.note_applied(snap.time_s, snap.stats.sz_applied)
        self._learn_step(snap.stats)
        view = self._reader.read(cfg, snap)
        if view.value is None:  # nothing to steer by (yet: stall needs two readings)
            return self._unmeasured(view.problem)
        self._problem_told = None
        deadband, notices = self._deadband(view.per_unit)
        lru = goal.metric in ("active_mem_bp", "inactive_mem_bp")
        # an lru action leaves the eligible bytes as they were: they tell nothing of its moves
        stale = self.controller.reading_is_stale(snap.time_s, snap.eligible_bytes, snap.stats)
        stale = stale and not lru
        moves = self.controller.inflight_moves
        if view.reading is not None and not lru:  # stall shows the moves just seen in part
            moves = tuple((t, b) for t, b in moves if t >= snap.time_s)
        elif view.seen_at_once:  # the reading shows every move made before it
            moves = ()
        member = Member.of(
            cfg,
            deadband_bp=deadband,
            eligible_bytes=view.quantity,
            capacity_bytes=view.totals,
            inflight_bytes=sum(b for _, b in moves),
            time_s=snap.time_s,
            read_s=self.controller.reading_s,
            moves=moves,
            seen_after_s=seen_after_s(cfg),
            tier_by_node=coordinator.tiers.tier_by_node,
            movable_bytes=view.movable,
            reading=view.reading,
            unit_bytes=view.unit_bytes,
        )
        share = coordinator.decide(member)
        value = workload.canonical_bp(model.GoalMetric(goal.metric), share.value_bp)
        reason = share.held_reason
        tiers = coordinator.tiers
        window_s = measurement_window_s(cfg)
        if reason == HELD_UNREACHABLE and snap.time_s - (self._started_s or 0.0) < window_s:
            reason = None  # nothing of its class seen yet: pages have not aged enough
        last_seen, now = self._unreachable_seen_s, snap.time_s
        if reason == HELD_UNREACHABLE:
            self._unreachable_seen_s = now
        if reason == HELD_UNREACHABLE and (last_seen is None or now - last_seen > EPISODE_QUIET_S):
            notices.append(
                Notice(
                    "warning",
                    f"goal unreachable: {goal.metric} of {tiers.node(goal.nid)} is "
                    f"{value}, target {goal.target}, but "
                    f"{tiers.node(cfg.node)} has no eligible memory left to move; "
                    "holding still",
                )
            )
        notices += self._failing_migrations(snap.stats)
        unconfirmed = 0
        if view.reading is None and sum(view.quantity.values()) > 0:
            unconfirmed = self.controller.unconfirmed_bp(snap.time_s, share.value_bp, member.raises)
        if reason is None and stale:
            quota = model.IDLE_QUOTA_BYTES  # wait for a measurement that saw the moves
        elif reason is None:
            step, demand = self.step_bytes or 0, share.demand_bytes
            if view.reading is None:
                demand = self._confirmed(demand, share.gap_bytes, unconfirmed, view.per_unit)
                quota = self.controller.quota_for(demand, step)
            else:  # an estimate: its gain's share, and a step at least if it is worth one
                part = int(demand * cfg.controller.gain)
                quota = self.controller.quota_for(max(part, step) if demand >= step else part)
        else:
            quota = model.IDLE_QUOTA_BYTES
        if not view.seen_at_once and view.reading is None:
            self.controller.note_seen(snap.time_s, share.dest_seen_bytes, self.step_bytes or 0)
        coordinator.granted(cfg.name, quota if quota > model.IDLE_QUOTA_BYTES else 0)
        self.controller.note_granted(quota)
        write = None if quota == self._quota_written else quota
        self._quota_written = quota
        return Tick(
            value,
            quota,
            write_quota=write,
            acting=quota > model.IDLE_QUOTA_BYTES,
            held=reason is not None,
            held_reason=reason,
            notices=tuple(notices),
        )

    @staticmethod
    def _confirmed(demand: int, gap_bytes: int, unconfirmed_bp: int, per_bp: float) -> int:
        """``demand`` but for its part of the gap that only the latest reading shows."""
        if demand <= 0 or gap_bytes <= 0 or unconfirmed_bp <= 0:
            return demand
        cut = unconfirmed_bp * per_bp * demand / gap_bytes
        return max(0, int(demand - cut))

    def _unmeasured(self, problem: str | None) -> Tick:
        """Idle, and held with the reason told once, while the goal cannot be measured."""
        self._quota_written, written = model.IDLE_QUOTA_BYTES, self._quota_written
        idle = model.IDLE_QUOTA_BYTES
        write = None if written == idle else idle
        if problem is None:
            return Tick(0, idle, write_quota=write)
        notices: tuple[Notice, ...] = ()
        if problem != self._problem_told:
            event = f"{self.cfg.goal.metric} cannot be measured: {problem}; holding still"
            notices = (Notice("warning", event),)
        self._problem_told = problem
        return Tick(
            0, idle, write_quota=write, held=True, held_reason=HELD_UNMEASURED, notices=notices
        )

    def _failing_migrations(self, stats: SchemeStats) -> list[Notice]:
        """Say once when the scheme tries but migrates nothing (destination full). Not
        for a scheme with filters: the regions it tries may hold no page they allow."""
        last = self._last_stats
        self._last_stats = stats
        if last is None or self.cfg.scheme.filters or self.cfg.scheme.target_nid is None:
            return []
        tried = stats.sz_tried - last.sz_tried
        applied = stats.sz_applied - last.sz_applied
        failing = tried > 0 and applied == 0
        dest = self.cfg.scheme.target_nid
        notices: list[Notice] = []
        if failing and not self._failing:
            notices.append(
                Notice(
                    "warning",
                    f"migrations to node {dest} are failing: the scheme tried {tried} bytes "
                    f"and moved none (is node {dest} full?)",
                )
            )
        elif self._failing and applied > 0:
            notices.append(Notice("info", f"migrations to node {dest} succeed again"))
        self._failing = failing if tried > 0 else self._failing
        return notices
