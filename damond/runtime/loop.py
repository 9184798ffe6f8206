"""One context's control loop: measure, compute the metric, decide, apply."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import structlog

from damond.backend.base import Backend
from damond.config import ContextConfig, Mode
from damond.control.arbiter import Claim, GoalArbiter
from damond.control.controller import DaemonController
from damond.control.goalmetric import goal_value_bp
from damond.control.status import ContextStatus
from damond.control.translation import build_context, fed_target, fed_value
from damond.model import damon as model
from damond.model.measurement import SchemeStats, Snapshot

IterationObserver = Callable[[ContextStatus, float], None]
"""Called after every iteration with the status and the iteration's seconds."""


def _structure(ctx: ContextConfig) -> model.Context:
    """The DAMON objects of ``ctx`` without goal values, which change online."""
    spec = build_context(ctx)
    schemes = tuple(
        replace(
            s,
            quota=replace(
                s.quota,
                goals=tuple(replace(g, target_value=0, current_value=0) for g in s.quota.goals),
            ),
        )
        for s in spec.schemes
    )
    return replace(spec, schemes=schemes)


class ContextLoop:
    def __init__(
        self,
        cfg: ContextConfig,
        backend: Backend,
        arbiter: GoalArbiter,
        interval_s: float,
        observers: Sequence[IterationObserver] = (),
        record_history: bool = False,
    ) -> None:
        self.cfg = cfg
        self.backend = backend
        self.arbiter = arbiter
        self.interval_s = interval_s
        self.observers = list(observers)
        self.record_history = record_history
        self.controller = DaemonController(cfg, interval_s)
        self.status = ContextStatus(cfg.name, cfg.goal.metric, cfg.goal.nid, cfg.goal.target_bp)
        self.log = structlog.get_logger("damond.context").bind(context=cfg.name)
        self._quota_set: int | None = None
        self._fed: tuple[int, int] | None = None
        self._started = False
        self._needs_restart = False
        self._unreachable = False
        self._failing = False
        self._last_stats: SchemeStats | None = None

    def reconfigure(self, cfg: ContextConfig) -> None:
        """Take new settings online; DAMON objects are rebuilt only if they changed."""
        if _structure(cfg) != _structure(self.cfg):
            self._needs_restart = True
        self.cfg = cfg
        self.controller.reconfigure(cfg)
        self.status.target_bp = cfg.goal.target_bp
        self._fed = None
        self.log.info(
            "context reconfigured",
            target_bp=cfg.goal.target_bp,
            enabled=cfg.enabled,
            mode=cfg.mode.value,
        )

    async def setup(self) -> None:
        await self.backend.start_context(build_context(self.cfg))
        self._started = True
        self._quota_set = None
        self._fed = (0, max(1, self.cfg.goal.target_bp)) if self.cfg.mode is Mode.NATIVE else None
        self._needs_restart = False

    async def teardown(self) -> None:
        if self._started:
            self._started = False
            self.status.up = False
            await self.backend.stop_context(self.cfg.name)

    async def run(self) -> None:
        """Iterate every ``interval_s`` until cancelled."""
        await self.setup()
        next_tick = time.monotonic()
        try:
            while True:
                if self._needs_restart:
                    await self.backend.stop_context(self.cfg.name)
                    await self.setup()
                await self.step()
                next_tick += self.interval_s
                delay = next_tick - time.monotonic()
                if delay < 0:
                    next_tick = time.monotonic()
                    delay = 0
                await asyncio.sleep(delay)
        finally:
            self.status.up = False

    async def step(self) -> None:
        started = time.perf_counter()
        cfg = self.cfg
        snap = await self.backend.snapshot(cfg.name)
        metric = goal_value_bp(
            cfg.goal.metric, cfg.goal.nid, snap.eligible_bytes, snap.capacity_bytes
        )
        if cfg.mode is Mode.DAEMON:
            await self._steer(snap)
        elif cfg.mode is Mode.KERNEL:
            await self._feed(snap, metric)
        else:
            await self._retarget()
        status = self.status
        status.up = snap.running
        status.metric_bp = metric
        status.snapshot = snap
        status.iterations += 1
        status.last_iteration_monotonic = time.monotonic()
        status.last_error = None
        if self.record_history and any(snap.eligible_bytes.values()):
            status.history.append((snap.time_s, metric))
        elapsed = time.perf_counter() - started
        if status.iterations == 1:
            self.log.info(
                "first iteration",
                metric=cfg.goal.metric,
                metric_bp=metric,
                target_bp=cfg.goal.target_bp,
                mode=cfg.mode.value,
                eligible_bytes=snap.eligible_bytes,
            )
        else:
            self.log.debug(
                "iteration",
                metric_bp=metric,
                eligible_bytes=snap.eligible_bytes,
                quota_bytes=status.quota_bytes,
                effective_quota_bytes=snap.effective_quota_bytes,
            )
        for observer in self.observers:
            observer(status, elapsed)

    async def _steer(self, snap: Snapshot) -> None:
        cfg = self.cfg
        self.controller.note_applied(snap.time_s, snap.stats.sz_applied)
        decision = self.controller.decide(snap.eligible_bytes, snap.capacity_bytes)
        claim = Claim(
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
        allowed = self.arbiter.may_act(claim)
        quota = decision.quota_bytes
        unreachable = decision.demand_bytes > 0 and snap.eligible_bytes.get(cfg.node, 0) == 0
        if unreachable and not self._unreachable:
            self.log.warning(
                f"goal unreachable: {cfg.goal.metric} of node {cfg.goal.nid} is "
                f"{decision.metric_bp} bp, target {cfg.goal.target_bp} bp, but node {cfg.node} "
                "has no eligible memory left to move; holding still",
            )
        self._unreachable = unreachable
        self._note_failing_migrations(snap)
        if not allowed or unreachable:
            quota = model.IDLE_QUOTA_BYTES
            self.controller.hold()
        self.status.held = not allowed or unreachable
        self.status.acting = quota > model.IDLE_QUOTA_BYTES
        self.status.quota_bytes = quota
        if quota != self._quota_set:
            await self.backend.set_quota(cfg.name, quota)
            self._quota_set = quota

    def _note_failing_migrations(self, snap: Snapshot) -> None:
        """Warn once when the scheme tries but migrates nothing (destination full)."""
        last = self._last_stats
        self._last_stats = snap.stats
        if last is None:
            return
        tried = snap.stats.sz_tried - last.sz_tried
        applied = snap.stats.sz_applied - last.sz_applied
        failing = tried > 0 and applied == 0
        if failing and not self._failing:
            self.log.warning(
                f"migrations to node {self.cfg.scheme.target_nid} are failing: the scheme tried "
                f"{tried} bytes and moved none (is node {self.cfg.scheme.target_nid} full?)"
            )
        elif self._failing and applied > 0:
            self.log.info(f"migrations to node {self.cfg.scheme.target_nid} succeed again")
        self._failing = failing if tried > 0 else self._failing

    async def _feed(self, snap: Snapshot, metric: int) -> None:
        cfg = self.cfg
        self.status.quota_bytes = cfg.scheme.quota.max_bytes
        if sum(snap.eligible_bytes.values()) == 0:
            return  # every share is undefined; feeding 0 would send the tuner to full power
        fed = (fed_value(cfg, metric), fed_target(cfg))
        if fed != self._fed:
            await self.backend.feed_goal(cfg.name, *fed)
            self._fed = fed

    async def _retarget(self) -> None:
        """Native mode: the kernel measures; only a changed target is written."""
        cfg = self.cfg
        self.status.quota_bytes = cfg.scheme.quota.max_bytes
        fed = (0, max(1, cfg.goal.target_bp))
        if fed != self._fed:
            await self.backend.feed_goal(cfg.name, *fed)
            self._fed = fed
