"""One context's decision per iteration: from a measurement to what to write.

The runtime measures (``backend.snapshot``), hands the snapshot to
:meth:`ContextControl.tick`, and writes what the returned :class:`Tick` says
(``backend.set_quota`` or ``backend.feed_goal``). Everything between, including
the goal metric (computed once per tick), is here and pure: no I/O, no asyncio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from damond.config import ContextConfig, Mode
from damond.control.arbiter import Claim, GoalArbiter
from damond.control.controller import DaemonController
from damond.control.goalmetric import goal_value_bp
from damond.control.translation import build_context, fed_value, kernel_target
from damond.model import damon as model
from damond.model.measurement import SchemeStats, Snapshot


@dataclass(frozen=True, slots=True)
class Notice:
    """A change worth one log line (said once when it starts, not every iteration)."""

    level: Literal["warning", "info"]
    event: str


@dataclass(frozen=True, slots=True)
class Tick:
    metric_bp: int
    """The goal metric as measured."""
    quota_bytes: int
    """The size quota in force (damond's in daemon mode, the cap otherwise)."""
    write_quota: int | None = None
    """A size quota to write now (daemon mode; None: unchanged)."""
    write_goal: tuple[int, int] | None = None
    """``(current_value, target_value)`` of the goal to write now (None: unchanged)."""
    acting: bool = False
    held: bool = False
    notices: tuple[Notice, ...] = ()


class ContextControl:
    """A context's configuration and the state its decisions need, in one place."""

    def __init__(self, cfg: ContextConfig, interval_s: float) -> None:
        self.controller = DaemonController(cfg, interval_s)
        self._structure = build_context(cfg, with_targets=False)
        self._quota_written: int | None = None
        self._goal_written: tuple[int, int] | None = None
        self._unreachable = False
        self._failing = False
        self._last_stats: SchemeStats | None = None

    @property
    def cfg(self) -> ContextConfig:
        return self.controller.ctx

    def damon_context(self) -> model.Context:
        """The DAMON context to start; what it starts with counts as written."""
        cfg = self.cfg
        self._structure = build_context(cfg, with_targets=False)
        self._quota_written = None
        native = cfg.mode is Mode.NATIVE
        self._goal_written = (0, kernel_target(cfg)) if native else None
        return build_context(cfg)

    def reconfigure(self, cfg: ContextConfig) -> bool:
        """Take ``cfg`` online; True if its DAMON objects must be rebuilt (restarted)."""
        self.controller.reconfigure(cfg)
        self._goal_written = None
        return build_context(cfg, with_targets=False) != self._structure

    def tick(self, snap: Snapshot, arbiter: GoalArbiter) -> Tick:
        cfg = self.cfg
        if cfg.mode is Mode.DAEMON:
            return self._steer(snap, arbiter)
        goal = cfg.goal
        metric = goal_value_bp(goal.metric, goal.nid, snap.eligible_bytes, snap.capacity_bytes)
        cap = cfg.scheme.quota.max_bytes
        if cfg.mode is Mode.KERNEL:
            if sum(snap.eligible_bytes.values()) == 0:
                # every share is undefined; feeding 0 would send the tuner to full power
                return Tick(metric, cap)
            fed = (fed_value(cfg, metric), kernel_target(cfg))
        else:  # native: the kernel measures; only a changed target is written
            fed = (0, kernel_target(cfg))
        if fed == self._goal_written:
            return Tick(metric, cap)
        self._goal_written = fed
        return Tick(metric, cap, write_goal=fed)

    def _steer(self, snap: Snapshot, arbiter: GoalArbiter) -> Tick:
        cfg = self.cfg
        self.controller.note_applied(snap.time_s, snap.stats.sz_applied)
        decision = self.controller.decide(snap.eligible_bytes, snap.capacity_bytes)
        allowed = arbiter.may_act(
            Claim(
                name=cfg.name,
                source=cfg.node,
                dest=cfg.scheme.target_nid,
                goal_node=cfg.goal.nid,
                metric=cfg.goal.metric,
                metric_bp=decision.metric_bp,
                target_bp=cfg.goal.target_bp,
                demand_bytes=decision.demand_bytes,
                time_s=snap.time_s,
            )
        )
        notices: list[Notice] = []
        unreachable = decision.demand_bytes > 0 and snap.eligible_bytes.get(cfg.node, 0) == 0
        if unreachable and not self._unreachable:
            notices.append(
                Notice(
                    "warning",
                    f"goal unreachable: {cfg.goal.metric} of node {cfg.goal.nid} is "
                    f"{decision.metric_bp} bp, target {cfg.goal.target_bp} bp, but node "
                    f"{cfg.node} has no eligible memory left to move; holding still",
                )
            )
        self._unreachable = unreachable
        notices += self._failing_migrations(snap.stats)
        quota = decision.quota_bytes
        held = not allowed or unreachable
        if held:
            quota = model.IDLE_QUOTA_BYTES
            self.controller.hold()
        write = None if quota == self._quota_written else quota
        self._quota_written = quota
        return Tick(
            decision.metric_bp,
            quota,
            write_quota=write,
            acting=quota > model.IDLE_QUOTA_BYTES,
            held=held,
            notices=tuple(notices),
        )

    def _failing_migrations(self, stats: SchemeStats) -> list[Notice]:
        """Say once when the scheme tries but migrates nothing (destination full)."""
        last = self._last_stats
        self._last_stats = stats
        if last is None:
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
