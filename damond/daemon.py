"""Assembles the daemon: backend, supervisor, signal handling."""

from __future__ import annotations

import asyncio
import signal
import time

import structlog

from damond.backend.base import Backend, EnvironmentRefused
from damond.backend.simulated import SimBackend
from damond.backend.sysfs import SysfsBackend
from damond.config import Settings
from damond.supervisor import Supervisor


def make_backend(settings: Settings) -> Backend:
    if settings.backend == "simulated":
        start = time.monotonic()
        return SimBackend(settings.simulation, settings.contexts, lambda: time.monotonic() - start)
    if settings.backend == "sysfs":
        return SysfsBackend(settings)
    raise EnvironmentRefused(f"unknown backend {settings.backend!r}")


async def run_daemon(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT; raises EnvironmentRefused if the host cannot be driven."""
    log = structlog.get_logger("damond")
    backend = make_backend(settings)
    supervisor = Supervisor(settings, backend)
    loop = asyncio.get_running_loop()

    def shutdown() -> None:
        if isinstance(backend, SysfsBackend):
            backend.exiting()
        supervisor.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, shutdown)
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
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
