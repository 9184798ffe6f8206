"""The daemon's Prometheus metrics (names and labels: the README's Metrics section).

:class:`DaemonMetrics` is an iteration observer: every context iteration
feeds it the loop's status, from which it keeps the scheme counters (made
monotonic across kdamond restarts, which reset the kernel's cumulative stats)
and the iteration-duration histogram. Gauges are read from the loops' live
statuses when scraped, so a failing loop shows ``damond_context_up 0`` and its
restarts at once, without waiting for an iteration it cannot complete.

The policy channel reports through :meth:`DaemonMetrics.policy_update`,
:meth:`DaemonMetrics.policy_generation` and :meth:`DaemonMetrics.mqtt_connected`.
Its series exist from the start (zero for every scope and result), so that
dashboards and alerts see a value on a host whose MQTT is disabled or has not
received a policy; ``damond_mqtt_enabled`` tells the two apart.

The families themselves are declared in :mod:`damond.metrics.families`;
:class:`StatusCollector` hands them to a prometheus-client registry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric

from damond.backend.base import Backend
from damond.control.status import ContextStatus
from damond.metrics.families import FAMILIES
from damond.metrics.goals import GoalSource, no_goals, shown_goal
from damond.metrics.rows import Scrape
from damond.metrics.state import ITERATION_BUCKETS_S, ContextSeries, HostState

__all__ = ["ITERATION_BUCKETS_S", "DaemonMetrics", "StatusCollector"]


class DaemonMetrics:
    def __init__(self, backend: Backend, mqtt_enabled: bool, goals: GoalSource = no_goals) -> None:
        self._host = HostState(backend, mqtt_enabled)
        self._series: dict[str, ContextSeries] = {}
        self._goals = goals
        """The goals in force (labels and targets in their own unit), by context."""

    # -- the iteration observer -------------------------------------------------

    def __call__(self, status: ContextStatus, seconds: float) -> None:
        series = self._series_of(status.name)
        if status.snapshot is not None:
            series.count(status.snapshot.stats)
        if math.isfinite(seconds) and seconds >= 0:
            series.observe(seconds)

    # -- the policy channel -----------------------------------------------------

    def policy_update(self, scope: str, result: str) -> None:
        updates = self._host.policy_updates
        updates[scope, result] = updates.get((scope, result), 0) + 1

    def policy_generation(self, scope: str, generation: int) -> None:
        self._host.policy_generations[scope] = generation

    def mqtt_connected(self, connected: bool) -> None:
        self._host.mqtt_connected = connected

    # -- exposition -------------------------------------------------------------

    def collect(self, statuses: Mapping[str, ContextStatus]) -> list[Metric]:
        """Every damond family, for the contexts in ``statuses``."""
        for name in [n for n in self._series if n not in statuses]:
            del self._series[name]
        contexts = [(status, self._series_of(name)) for name, status in statuses.items()]
        goals = [shown_goal(status, self._goals(name)) for name, status in statuses.items()]
        scrape = Scrape(self._host, contexts, goals)
        return [metric for family in FAMILIES for metric in family.collect(scrape)]

    def render(self, statuses: Mapping[str, ContextStatus]) -> bytes:
        """The damond families alone in the text format (what tests and benchmarks read)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StatusCollector(self, lambda: statuses))
        return generate_latest(registry)

    def _series_of(self, name: str) -> ContextSeries:
        series = self._series.get(name)
        if series is None:
            series = self._series[name] = ContextSeries()
        return series


class StatusCollector:
    """A prometheus-client collector of the damond families, read from the loops' live
    statuses at each collection."""

    def __init__(
        self, metrics: DaemonMetrics, statuses: Callable[[], Mapping[str, ContextStatus]]
    ) -> None:
        self._metrics = metrics
        self._statuses = statuses

    def collect(self) -> list[Metric]:
        return self._metrics.collect(self._statuses())
