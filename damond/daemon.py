"""Assembles the daemon: backend, supervisor, signal handling."""

from __future__ import annotations

import asyncio
import signal
import time

import structlog

from damond.backend.base import Backend, EnvironmentRefused
from damond.backend.simulated import SimBackend
from damond.config import Settings
from damond.policy.channel import PolicyChannel
from damond.policy.merge import CapacityOf
from damond.policy.signing import configured_keys
from damond.policy.store import PolicyStore
from damond.supervisor import Supervisor


def make_backend(settings: Settings) -> Backend:
    if settings.backend == "simulated":
        start = time.monotonic()
        return SimBackend(settings.simulation, settings.contexts, lambda: time.monotonic() - start)
    raise EnvironmentRefused(
        'the sysfs backend is not part of this version of damond yet; use backend = "simulated"'
    )


def node_capacity(settings: Settings, supervisor: Supervisor) -> CapacityOf:
    """A node's capacity as last measured, else as the simulated machine defines it."""
    simulated = (
        {n.id: n.capacity_bytes for n in settings.simulation.nodes}
        if settings.backend == "simulated"
        else {}
    )

    def capacity_of(node: int) -> int | None:
        for status in supervisor.statuses.values():
            if status.snapshot is not None and node in status.snapshot.capacity_bytes:
                return status.snapshot.capacity_bytes[node]
        return simulated.get(node)

    return capacity_of


async def run_daemon(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT; raises EnvironmentRefused if the host cannot be driven."""
    log = structlog.get_logger("damond")
    backend = make_backend(settings)
    channel: PolicyChannel | None = None
    if settings.mqtt.enabled:
        keys = configured_keys(settings.mqtt)
        store = PolicyStore.load(settings.state_dir, settings.mqtt.group)
        effective = tuple(store.effective_contexts(settings.contexts))
        supervisor = Supervisor(settings.model_copy(update={"contexts": effective}), backend)
        channel = PolicyChannel(
            settings.mqtt,
            store,
            settings.contexts,
            supervisor.apply_contexts,
            lambda: supervisor.statuses,
            node_capacity(settings, supervisor),
            keys=keys,
        )
        supervisor.services.append(channel.run)
    else:
        supervisor = Supervisor(settings, backend)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, supervisor.stop)
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
