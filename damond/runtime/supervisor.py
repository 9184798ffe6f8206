"""The daemon's supervisor: one supervised loop per context, under one TaskGroup.

A context whose loop raises is logged, backs off exponentially (capped) and is
restarted on its own; the other contexts never notice. Extra long-running
services (exporter, policy channel, watchdog) run in the same TaskGroup and are
cancelled with it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import structlog

from damond.backend.base import Backend
from damond.config import ContextConfig, GoalConfig, Settings
from damond.control.coordinator import Coordinator
from damond.control.status import ContextStatus, silent_contexts
from damond.control.tiers import Tiers
from damond.runtime.loop import ContextLoop, IterationObserver

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 60.0
HEALTHY_RUN_S = 60.0
"""A loop that ran this long before failing starts its backoff from the base again."""
SLOW_STOP_REPORT_S = 5.0
"""A shutdown still waiting for tasks after this long names them in the journal,
well before systemd's TimeoutStopSec (30 s) ends it with SIGKILL."""

Service = Callable[[], Coroutine[Any, Any, None]]


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        observers: Sequence[IterationObserver] = (),
        services: Sequence[Service] = (),
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.observers = list(observers)
        self.services = list(services)
        simulated = settings.backend == "simulated"
        self.coordinator = Coordinator(settings.interval_s)
        """One coordinator over every context (shared goals, conflicts, holds); it learns
        the backend's memory tiers once the backend is open."""
        self.step_bytes = settings.simulation.chunk_bytes if simulated else None
        """What one measurement resolves, when known before measuring (a simulated chunk)."""
        self.loops: dict[str, ContextLoop] = {}
        self.stop_event = asyncio.Event()
        self.epoch = time.monotonic()
        """Every context loop's ticks count from here (the start), so that they wake together."""
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._leave_running = False
        self._tg: asyncio.TaskGroup | None = None
        self.slow_stop_report_s = SLOW_STOP_REPORT_S
        self.log = structlog.get_logger("damond.runtime.supervisor")

    @property
    def statuses(self) -> dict[str, ContextStatus]:
        return {name: loop.status for name, loop in self.loops.items()}

    def goal_of(self, name: str) -> GoalConfig | None:
        """The goal in force of a running context (a policy may have added or changed it)."""
        loop = self.loops.get(name)
        return None if loop is None else loop.cfg.goal

    @property
    def all_iterated(self) -> bool:
        """True once every running context has completed its first iteration."""
        return all(loop.status.iterations > 0 for loop in self.loops.values())

    def stuck_contexts(self, max_age_s: float) -> list[str]:
        """Contexts whose loop has made no progress (an iteration or a (re)start) for
        ``max_age_s`` seconds; a loop waiting out its backoff is being handled, not stuck."""
        return silent_contexts(self.statuses, max_age_s, time.monotonic(), starts_count=True)

    def stop(self) -> None:
        self.stop_event.set()

    async def run(self) -> None:
        """Run until :meth:`stop`; backend errors at open propagate to the caller."""
        await self.backend.open()
        self.coordinator.tiers = Tiers(await self.backend.tiers())
        self.epoch = time.monotonic()
        slow_stop: asyncio.TimerHandle | None = None
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for ctx in self.settings.contexts:
                    self._start(ctx)
                service_tasks = [
                    tg.create_task(svc(), name=getattr(svc, "__qualname__", repr(svc)))
                    for svc in self.services
                ]
                await self.stop_event.wait()
                self._leave_running = self.settings.on_exit == "leave"
                self.log.info("stopping", on_exit=self.settings.on_exit)
                stopping = [*self._tasks.values(), *service_tasks]
                for task in stopping:
                    task.cancel()
                slow_stop = asyncio.get_running_loop().call_later(
                    self.slow_stop_report_s, self._report_slow_stop, stopping
                )
        finally:
            if slow_stop is not None:
                slow_stop.cancel()
            self._tg = None
            await self.backend.close()
        self.log.info(
            "stopped",
            iterations={name: loop.status.iterations for name, loop in self.loops.items()},
        )

    def _report_slow_stop(self, tasks: Sequence[asyncio.Task[None]]) -> None:
        waiting = sorted(task.get_name() for task in tasks if not task.done())
        if waiting:
            self.log.warning(
                "shutdown still waiting for tasks", tasks=waiting, after_s=self.slow_stop_report_s
            )

    def apply_contexts(self, contexts: Sequence[ContextConfig]) -> None:
        """Make the running contexts match ``contexts``, synchronously and as a whole.

        Unchanged contexts are not touched, changed ones are reconfigured online,
        removed ones are stopped and new ones started.
        """
        wanted = {ctx.name: ctx for ctx in contexts}
        for name in list(self.loops):
            if name not in wanted:
                self._stop(name)
        for name, ctx in wanted.items():
            loop = self.loops.get(name)
            if loop is None:
                self._start(ctx)
            elif loop.cfg != ctx:
                loop.reconfigure(ctx)

    def _start(self, ctx: ContextConfig) -> None:
        if self._tg is None:
            raise RuntimeError("the supervisor is not running")
        loop = ContextLoop(
            ctx,
            self.backend,
            self.coordinator,
            self.settings.interval_s,
            self.observers,
            epoch=self.epoch,
            step_bytes=self.step_bytes,
        )
        self.loops[ctx.name] = loop
        loop.status.alive_since_monotonic = time.monotonic()
        self._tasks[ctx.name] = self._tg.create_task(self._supervise(loop), name=ctx.name)

    def _stop(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
        self.loops.pop(name, None)
        self.coordinator.forget(name)

    async def _supervise(self, loop: ContextLoop) -> None:
        log = loop.log
        failures = 0
        while True:
            started = time.monotonic()
            loop.status.alive_since_monotonic = started
            try:
                await loop.run()
            except asyncio.CancelledError:
                if not self._leave_running:
                    await self._teardown(loop)
                raise
            except Exception as exc:
                if time.monotonic() - started >= HEALTHY_RUN_S:
                    failures = 0
                failures += 1
                delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (failures - 1))
                loop.status.restarts += 1
                loop.status.last_error = f"{type(exc).__name__}: {exc}"
                log.error("context loop failed; restarting", retry_in_s=delay, exc_info=True)
                await self._teardown(loop)
                loop.status.alive_since_monotonic = None
                await asyncio.sleep(delay)

    async def _teardown(self, loop: ContextLoop) -> None:
        try:
            await loop.teardown()
        except Exception:
            loop.log.warning("context teardown failed", exc_info=True)
