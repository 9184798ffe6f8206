"""One context's control loop: measure (backend) -> decide (control, pure) -> apply (backend)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence

import structlog

from damond.backend.base import Backend
from damond.config import ContextConfig
from damond.control.coordinator import Coordinator
from damond.control.status import ContextStatus
from damond.control.tick import ContextControl
from damond.runtime import logs

IterationObserver = Callable[[ContextStatus, float], None]
"""Called after every iteration with the status and the iteration's seconds."""


async def sleep_to_next_tick(epoch: float, period_s: float) -> None:
    """Sleep until the next ``epoch + k * period_s`` after now: whatever ticks on one
    epoch wakes together."""
    now = time.monotonic()
    await asyncio.sleep(epoch + (math.floor((now - epoch) / period_s) + 1) * period_s - now)


class ContextLoop:
    def __init__(
        self,
        cfg: ContextConfig,
        backend: Backend,
        coordinator: Coordinator,
        interval_s: float,
        observers: Sequence[IterationObserver] = (),
        record_history: bool = False,
        epoch: float | None = None,
        step_bytes: int | None = None,
    ) -> None:
        self.control = ContextControl(cfg, interval_s, step_bytes)
        self.epoch = epoch
        """Monotonic time the loop's ticks count from; None: from when it starts."""
        self.backend = backend
        self.coordinator = coordinator
        """The coordinator every context loop of the daemon shares."""
        self.interval_s = interval_s
        self.observers = list(observers)
        self.record_history = record_history
        self.status = ContextStatus(cfg.name, cfg.goal.metric, cfg.goal.nid, cfg.goal.target)
        self.log = structlog.get_logger("damond.context").bind(context=cfg.name)
        self._started = False
        self._needs_restart = False

    @property
    def cfg(self) -> ContextConfig:
        """The context's configuration in force (held once, by its control)."""
        return self.control.cfg

    def reconfigure(self, cfg: ContextConfig) -> None:
        """Take new settings online; DAMON objects are rebuilt only if they changed."""
        self._needs_restart |= self.control.reconfigure(cfg)
        self.status.target_bp = cfg.goal.target
        self.log.info(
            "context reconfigured",
            target_bp=cfg.goal.target_bp,
            enabled=cfg.enabled,
            mode=cfg.mode.value,
        )

    async def setup(self) -> None:
        await self.backend.start_context(self.control.damon_context())
        self._started = True
        self._needs_restart = False

    async def teardown(self) -> None:
        if self._started:
            self._started = False
            self.status.up = False
            await self.backend.stop_context(self.cfg.name)

    async def run(self) -> None:
        """Iterate every ``interval_s`` until cancelled, on the ticks ``epoch + k *
        interval_s``: loops that share an epoch (the supervisor's) wake together, once per
        interval, instead of one by one. A late iteration waits for the next tick."""
        await self.setup()
        epoch = time.monotonic() if self.epoch is None else self.epoch
        try:
            while True:
                if self._needs_restart:
                    await self.backend.stop_context(self.cfg.name)
                    await self.setup()
                await self.step()
                await sleep_to_next_tick(epoch, self.interval_s)
        finally:
            self.status.up = False

    async def step(self) -> None:
        started = time.perf_counter()
        name = self.cfg.name
        snap = await self.backend.snapshot(name)
        tick = self.control.tick(snap, self.coordinator)
        for notice in tick.notices:
            if notice.level == "warning":
                self.log.warning(notice.event)
            else:
                self.log.info(notice.event)
        if tick.write_quota is not None:
            await self.backend.set_quota(name, tick.write_quota)
        if tick.write_goal is not None:
            await self.backend.feed_goal(name, *tick.write_goal)
        metric = tick.metric_bp
        status = self.status
        status.quota_bytes = tick.quota_bytes
        status.acting = tick.acting
        status.held = tick.held
        status.held_reason = tick.held_reason
        dest = self.cfg.scheme.target_nid
        move = self.coordinator.tiers.move(self.cfg.node, dest) if dest is not None else None
        status.move = move or self.cfg.scheme.action
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
                metric=self.cfg.goal.metric,
                metric_bp=metric,
                target_bp=self.cfg.goal.target_bp,
                mode=self.cfg.mode.value,
                eligible_bytes=snap.eligible_bytes,
            )
        elif logs.enabled("debug"):
            self.log.debug(
                "iteration",
                metric_bp=metric,
                eligible_bytes=snap.eligible_bytes,
                quota_bytes=status.quota_bytes,
                effective_quota_bytes=snap.effective_quota_bytes,
            )
        for observer in self.observers:
            observer(status, elapsed)
