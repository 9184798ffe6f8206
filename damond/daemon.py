"""Assembles the daemon: backend, supervisor, signal handling."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time

import structlog

from damond.backend.base import Backend, EnvironmentRefused
from damond.backend.simulated import SimBackend
from damond.config import Settings
from damond.exporter import DaemonMetrics
from damond.loop import IterationObserver
from damond.metrics_http import MetricsEndpoint
from damond.reload import ConfigSource, Reloader
from damond.sdnotify import Notifier, watchdog_period_s
from damond.service_notify import ServiceNotifications
from damond.supervisor import Service, Supervisor


def make_backend(settings: Settings) -> Backend:
    if settings.backend == "simulated":
        start = time.monotonic()
        return SimBackend(settings.simulation, settings.contexts, lambda: time.monotonic() - start)
    raise EnvironmentRefused(
        'the sysfs backend is not part of this version of damond yet; use backend = "simulated"'
    )


async def run_daemon(settings: Settings, source: ConfigSource | None = None) -> None:
    """Run until SIGTERM or SIGINT; raises EnvironmentRefused if the host cannot be driven.

    ``source`` is where ``settings`` came from; SIGHUP re-reads it.
    """
    log = structlog.get_logger("damond")
    backend = make_backend(settings)
    observers: list[IterationObserver] = []
    services: list[Service] = []
    # -- metrics: the exporter observes every iteration; the endpoint is a service
    metrics = DaemonMetrics(backend, mqtt_enabled=settings.mqtt.enabled)
    observers.append(metrics)
    if settings.metrics.enabled:
        endpoint = MetricsEndpoint(
            settings.metrics, metrics, lambda: supervisor.statuses, settings.interval_s
        )
        services.append(endpoint.serve)
    # -- end metrics
    supervisor = Supervisor(settings, backend, observers, services)

    # systemd: sd_notify readiness, status and watchdog; SIGHUP reload; STOPPING=1.
    notifier = Notifier.from_environment()
    notifications = ServiceNotifications(supervisor, notifier, watchdog_period_s())
    reloader = Reloader(supervisor, source or ConfigSource.default(), notifier)
    supervisor.observers.append(notifications.observe)
    supervisor.services += [notifications.report, notifications.feed_watchdog, reloader.serve]

    def shut_down() -> None:
        notifier.stopping()
        supervisor.stop()

    loop = asyncio.get_running_loop()
    handlers = {
        signal.SIGTERM: shut_down,
        signal.SIGINT: shut_down,
        signal.SIGHUP: reloader.request,
    }
    for sig, handler in handlers.items():
        loop.add_signal_handler(sig, handler)
    log.info(
        "starting",
        backend=backend.name,
        kernel=backend.kernel_version(),
        contexts=[c.name for c in settings.contexts],
        interval_s=settings.interval_s,
    )
    try:
        await supervisor.run()
    finally:
        for sig in handlers:
            loop.remove_signal_handler(sig)
        notifier.close()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
