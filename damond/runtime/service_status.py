"""What damond tells systemd: readiness, a one-line status, and watchdog pings.

``READY=1`` goes out once every context has completed its first iteration.
``WATCHDOG=1`` is sent only while every context loop makes progress, so a
stuck loop stops the pings and systemd restarts the service.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import structlog

from damond.control.status import ContextStatus
from damond.runtime.loop import sleep_to_next_tick
from damond.runtime.sdnotify import Notifier
from damond.runtime.supervisor import Supervisor

STATUS_MIN_PERIOD_S = 1.0
STUCK_AFTER_INTERVALS = 3
STUCK_AFTER_MIN_S = 2.0
"""A loop without progress for this many intervals (and at least this long) is stuck."""

MqttState = Callable[[], str | None]
"""The policy channel's state for the status line ("connected", ...), None if unknown."""

log = structlog.get_logger("damond.service")


def status_line(statuses: Mapping[str, ContextStatus], mqtt_state: str | None) -> str:
    """``2/2 contexts up; goal error node0 +35 bp, node1 -12 bp; mqtt connected``."""
    up = sum(1 for s in statuses.values() if s.up)
    parts = [f"{up}/{len(statuses)} contexts up"]
    errors = [
        f"{name} {s.metric_bp - s.target_bp:+d} bp"
        for name, s in statuses.items()
        if s.metric_bp is not None
    ]
    if errors:
        parts.append("goal error " + ", ".join(errors))
    failing = [name for name, s in statuses.items() if s.last_error]
    if failing:
        parts.append("failing " + ", ".join(failing))
    if mqtt_state:
        parts.append(f"mqtt {mqtt_state}")
    return "; ".join(parts)


def no_mqtt_state() -> str | None:
    return None


class ServiceNotifications:
    def __init__(
        self,
        supervisor: Supervisor,
        notifier: Notifier,
        watchdog_period_s: float | None,
        mqtt_state: MqttState = no_mqtt_state,
    ) -> None:
        self.supervisor = supervisor
        self.notifier = notifier
        self.watchdog_period_s = watchdog_period_s
        self.mqtt_state = mqtt_state
        self._all_iterated = asyncio.Event()

    def observe(self, status: ContextStatus, elapsed_s: float) -> None:
        """Iteration observer: notes when every context has completed one."""
        if not self._all_iterated.is_set() and self.supervisor.all_iterated:
            self._all_iterated.set()

    def status_text(self) -> str:
        return status_line(self.supervisor.statuses, self.mqtt_state())

    async def report(self) -> None:
        """Send READY=1 after every context's first iteration, then keep STATUS current."""
        if not self.supervisor.all_iterated:
            await self._all_iterated.wait()
        text = self.status_text()
        self.notifier.ready(status=text)
        log.info("ready", status=text)
        period = max(STATUS_MIN_PERIOD_S, self.supervisor.settings.interval_s)
        while True:
            # on the context loops' ticks: the process wakes once per interval, not twice
            await sleep_to_next_tick(self.supervisor.epoch, period)
            new_text = self.status_text()
            if new_text != text:
                self.notifier.status(new_text)
                text = new_text

    def stuck_after_s(self) -> float:
        return max(STUCK_AFTER_MIN_S, STUCK_AFTER_INTERVALS * self.supervisor.settings.interval_s)

    async def feed_watchdog(self) -> None:
        """Ping every half watchdog period while no context loop is stuck."""
        if self.watchdog_period_s is None:
            return
        stuck_before: list[str] = []
        while True:
            stuck = self.supervisor.stuck_contexts(self.stuck_after_s())
            if not stuck:
                self.notifier.watchdog()
                if stuck_before:
                    log.info("context loops progress again; watchdog pings resumed")
            elif stuck != stuck_before:
                log.error(
                    "context loops stuck; watchdog pings withheld so systemd restarts damond",
                    contexts=stuck,
                    no_progress_for_s=self.stuck_after_s(),
                )
            stuck_before = stuck
            await asyncio.sleep(self.watchdog_period_s)
