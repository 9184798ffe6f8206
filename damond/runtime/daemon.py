"""Assembles the daemon: backend, supervisor, signal handling."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time

import structlog

from damond.backend.base import Backend
from damond.backend.simulated.backend import SimBackend
from damond.backend.sysfs.backend import SysfsBackend
from damond.config import Settings
from damond.control.translation import build_context
from damond.metrics.endpoint import MetricsEndpoint
from damond.metrics.exporter import DaemonMetrics
from damond.metrics.statusdoc import config_only
from damond.model.errors import EnvironmentRefused
from damond.policy.channel import PolicyChannel
from damond.policy.document import Address
from damond.policy.merge import CapacityOf
from damond.policy.signing import configured_keys
from damond.policy.store import STATE_FILE, PolicyStore, saved_policy_exists
from damond.runtime.configsource import ConfigSource
from damond.runtime.hangup import catch_hangup, take_hangup
from damond.runtime.policylimits import host_limits, load_check
from damond.runtime.reload import EffectiveContexts, Reloader, configured_contexts
from damond.runtime.sdnotify import Notifier, watchdog_period_s
from damond.runtime.service_status import ServiceNotifications, no_mqtt_state
from damond.runtime.supervisor import Supervisor
from damond.runtime.targets import policy_target_source


def make_backend(settings: Settings) -> Backend:
    if settings.backend == "simulated":
        start = time.monotonic()
        return SimBackend(settings.simulation, settings.contexts, lambda: time.monotonic() - start)
    if settings.backend == "sysfs":
        return SysfsBackend(
            with_policy_spares(settings), [build_context(c) for c in settings.contexts]
        )
    raise EnvironmentRefused(f"unknown backend {settings.backend!r}")


def with_policy_spares(settings: Settings) -> Settings:
    """``settings`` with an idle kdamond staged for each context policies may add
    (``nr_kdamonds`` cannot grow while any kdamond runs), beside the reload's spares."""
    if not settings.policy.allow_new_contexts:
        return settings
    spares = settings.sysfs.spare_kdamonds + settings.policy.max_new_contexts
    return settings.model_copy(
        update={"sysfs": settings.sysfs.model_copy(update={"spare_kdamonds": spares})}
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


async def run_daemon(settings: Settings, source: ConfigSource | None = None) -> None:
    """Run until SIGTERM or SIGINT; raises EnvironmentRefused if the host cannot be driven.

    ``source`` is where ``settings`` came from; SIGHUP re-reads it.
    """
    log = structlog.get_logger("damond")
    backend = make_backend(settings)

    # policy: accepted policies are loaded before anything runs, then applied on top
    store: PolicyStore | None = None
    running = settings
    if settings.mqtt.enabled:
        keys = configured_keys(settings.mqtt)
        address = Address(settings.mqtt.host_id, settings.mqtt.group)
        limits = host_limits(settings)
        store = PolicyStore.load(
            settings.state_dir, address, keys, load_check(settings.contexts, limits)
        )
        effective = tuple(store.effective_contexts(settings.contexts))
        running = settings.model_copy(update={"contexts": effective})
    elif saved_policy_exists(settings.state_dir):
        log.warning(
            "a saved policy is not applied: the policy channel is off (mqtt.enabled is "
            "false, or no mqtt.host is set); the contexts run as configured",
            path=str(settings.state_dir / STATE_FILE),
        )

    supervisor = Supervisor(running, backend)
    metrics = DaemonMetrics(backend, mqtt_enabled=settings.mqtt.enabled, goals=supervisor.goal_of)
    supervisor.observers.append(metrics)
    services = supervisor.services

    # metrics: the exporter observes every iteration (above); the endpoint is a service
    if settings.metrics.enabled:
        endpoint = MetricsEndpoint(
            settings.metrics,
            metrics,
            lambda: supervisor.statuses,
            settings.interval_s,
            config_only if store is None else policy_target_source(store),
            supervisor.goal_of,
        )
        services.append(endpoint.serve)

    channel: PolicyChannel | None = None
    effective_contexts: EffectiveContexts = configured_contexts
    mqtt_state = no_mqtt_state
    if store is not None:
        channel = PolicyChannel(
            settings.mqtt,
            store,
            settings.contexts,
            supervisor.apply_contexts,
            lambda: supervisor.statuses,
            node_capacity(settings, supervisor),
            keys=keys,
            metrics=metrics,
            limits=limits,
        )
        services.append(channel.run)
        mqtt_state = channel.connection_state
        effective_contexts = channel.rebase  # a reload rebases the policies on the new file

    # systemd: sd_notify readiness, status and watchdog; SIGHUP reload; STOPPING=1.
    notifier = Notifier.from_environment()
    notifications = ServiceNotifications(supervisor, notifier, watchdog_period_s(), mqtt_state)
    reloader = Reloader(supervisor, source or ConfigSource.default(), notifier, effective_contexts)
    supervisor.observers.append(notifications.observe)
    services += [notifications.report, notifications.feed_watchdog, reloader.serve]

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
    if take_hangup():  # caught before the loop's own handler was in place
        reloader.request()
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
        catch_hangup()  # not fatal while the process winds down either
        notifier.close()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
