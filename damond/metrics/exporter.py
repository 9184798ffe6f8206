"""The daemon's Prometheus metrics (names and labels: the design notes' contract).

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
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import chain

from damond import __version__
from damond.backend.base import Backend
from damond.control.status import ContextStatus
from damond.metrics.exposition import TextRenderer, Value, labels
from damond.model.measurement import SchemeStats

ITERATION_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
POLICY_SCOPES = ("fleet", "group", "host")
POLICY_RESULTS = ("applied", "stale", "duplicate", "rejected")
BP_PER_RATIO = 10_000

_BUCKET_LABELS = (*(repr(b) for b in ITERATION_BUCKETS_S), "+Inf")


def _cumulative(stats: SchemeStats) -> tuple[int, int, int]:
    return (stats.sz_tried, stats.sz_applied, stats.qt_exceeds)


@dataclass(frozen=True, slots=True)
class _SampleNames:
    """One context's sample names with their labels, built once per goal."""

    target: str
    current: str
    quota: str
    effective: str
    tried: str
    applied: str
    exceeds: str
    up: str
    restarts: str
    histogram: tuple[str, ...]
    """The buckets in order, then ``_sum`` and ``_count``."""

    @classmethod
    def build(cls, context: str, goal_metric: str, goal_node: int) -> _SampleNames:
        ctx = labels(context=context)
        goal = labels(context=context, goal_metric=goal_metric, node=goal_node)
        hist = "damond_control_iteration_seconds"
        return cls(
            target="damond_goal_target_ratio" + goal,
            current="damond_goal_current_ratio" + goal,
            quota="damond_quota_bytes" + ctx,
            effective="damond_quota_effective_bytes" + ctx,
            tried="damond_scheme_tried_bytes_total" + ctx,
            applied="damond_scheme_applied_bytes_total" + ctx,
            exceeds="damond_scheme_quota_exceeds_total" + ctx,
            up="damond_context_up" + ctx,
            restarts="damond_context_restarts_total" + ctx,
            histogram=(
                *(f"{hist}_bucket{labels(context=context, le=le)}" for le in _BUCKET_LABELS),
                f"{hist}_sum{ctx}",
                f"{hist}_count{ctx}",
            ),
        )


@dataclass
class _ContextSeries:
    """What the exporter accumulates for one context between scrapes."""

    name: str
    last_raw: tuple[int, int, int] = (0, 0, 0)
    offset: tuple[int, int, int] = (0, 0, 0)
    totals: tuple[int, int, int] = (0, 0, 0)
    """Exported tried bytes, applied bytes and quota exceeds: offset + raw."""
    histogram: list[Value] = field(default_factory=lambda: [0] * (len(_BUCKET_LABELS) + 2))
    """Cumulative bucket counts in order, then the sum and the count."""
    _names: _SampleNames | None = None
    _goal: tuple[str, int] | None = None
    _eligible_names: dict[int, str] = field(default_factory=dict)

    def count(self, raw: tuple[int, int, int]) -> None:
        last = self.last_raw
        if raw[0] < last[0] or raw[1] < last[1] or raw[2] < last[2]:
            # the kernel's stats started again (kdamond or context restart)
            self.offset = self.totals
        self.last_raw = raw
        off = self.offset
        self.totals = (raw[0] + off[0], raw[1] + off[1], raw[2] + off[2])

    def observe(self, seconds: float) -> None:
        hist = self.histogram
        n_buckets = len(_BUCKET_LABELS)
        for i in range(bisect.bisect_left(ITERATION_BUCKETS_S, seconds), n_buckets):
            hist[i] += 1
        hist[n_buckets] += seconds
        hist[n_buckets + 1] += 1

    def names(self, status: ContextStatus) -> _SampleNames:
        goal = (status.goal_metric, status.goal_node)
        if self._names is None or goal != self._goal:
            self._names = _SampleNames.build(self.name, *goal)
            self._goal = goal
        return self._names

    def eligible_name(self, node: int) -> str:
        name = self._eligible_names.get(node)
        if name is None:
            name = f"damond_node_eligible_bytes{labels(context=self.name, node=node)}"
            self._eligible_names[node] = name
        return name


class DaemonMetrics:
    def __init__(
        self,
        backend: Backend,
        mqtt_enabled: bool,
    ) -> None:
        self.backend = backend
        self.mqtt_enabled = mqtt_enabled
        self._series: dict[str, _ContextSeries] = {}
        self._policy_updates: dict[tuple[str, str], int] = {
            (scope, result): 0 for scope in POLICY_SCOPES for result in POLICY_RESULTS
        }
        self._policy_generations: dict[str, int] = dict.fromkeys(POLICY_SCOPES, 0)
        self._mqtt_connected = False
        self._renderer = TextRenderer()

    # -- the iteration observer -------------------------------------------------

    def __call__(self, status: ContextStatus, seconds: float) -> None:
        series = self._series.get(status.name)
        if series is None:
            series = self._series[status.name] = _ContextSeries(status.name)
        if status.snapshot is not None:
            series.count(_cumulative(status.snapshot.stats))
        if math.isfinite(seconds) and seconds >= 0:
            series.observe(seconds)

    # -- the policy channel -----------------------------------------------------

    def policy_update(self, scope: str, result: str) -> None:
        key = (scope, result)
        self._policy_updates[key] = self._policy_updates.get(key, 0) + 1

    def policy_generation(self, scope: str, generation: int) -> None:
        self._policy_generations[scope] = generation

    def mqtt_connected(self, connected: bool) -> None:
        self._mqtt_connected = connected

    # -- exposition -------------------------------------------------------------

    def render(self, statuses: Mapping[str, ContextStatus]) -> bytes:
        """The text exposition of everything, for the contexts in ``statuses``."""
        for name in [n for n in self._series if n not in statuses]:
            del self._series[name]
        contexts: list[tuple[ContextStatus, _ContextSeries]] = []
        for name, status in statuses.items():
            series = self._series.get(name)
            if series is None:
                series = self._series[name] = _ContextSeries(name)
            contexts.append((status, series))
        out: list[str] = []
        self._render_host(out, contexts)
        self._render_contexts(out, contexts)
        self._render_vmstat(out)
        return "".join(out).encode()

    def _render_host(
        self, out: list[str], contexts: list[tuple[ContextStatus, _ContextSeries]]
    ) -> None:
        family = self._renderer.family
        backend = self.backend
        family(
            out,
            "damond_build_info",
            "gauge",
            "Always 1; the labels say which damond drives which backend and kernel.",
            [
                "damond_build_info"
                + labels(version=__version__, backend=backend.name, kernel=backend.kernel_version())
            ],
            [1],
        )
        features = sorted(backend.features().items())
        family(
            out,
            "damond_kernel_feature_supported",
            "gauge",
            "1 if the kernel's DAMON has the feature, 0 if not.",
            [f"damond_kernel_feature_supported{labels(feature=name)}" for name, _ in features],
            [int(ok) for _, ok in features],
        )
        family(
            out,
            "damond_mqtt_enabled",
            "gauge",
            "1 if the MQTT policy channel is configured to run.",
            ["damond_mqtt_enabled"],
            [int(self.mqtt_enabled)],
        )
        family(
            out,
            "damond_mqtt_connected",
            "gauge",
            "1 while connected to the MQTT broker (always 0 with MQTT disabled).",
            ["damond_mqtt_connected"],
            [int(self._mqtt_connected)],
        )
        updates = sorted(self._policy_updates.items())
        family(
            out,
            "damond_policy_updates_total",
            "counter",
            "Policy documents received, by scope and result.",
            [f"damond_policy_updates_total{labels(scope=s, result=r)}" for (s, r), _ in updates],
            [n for _, n in updates],
        )
        generations = sorted(self._policy_generations.items())
        family(
            out,
            "damond_policy_generation",
            "gauge",
            "Generation of the last policy applied per scope (0: none yet).",
            [f"damond_policy_generation{labels(scope=s)}" for s, _ in generations],
            [g for _, g in generations],
        )
        capacity: dict[int, int] = {}
        for status, _ in contexts:
            if status.snapshot is not None:
                capacity.update(status.snapshot.capacity_bytes)
        nodes = sorted(capacity)
        family(
            out,
            "damond_node_capacity_bytes",
            "gauge",
            "Memory capacity of the NUMA node.",
            [f"damond_node_capacity_bytes{labels(node=n)}" for n in nodes],
            [capacity[n] for n in nodes],
        )

    def _render_contexts(
        self, out: list[str], contexts: list[tuple[ContextStatus, _ContextSeries]]
    ) -> None:
        statuses = [status for status, _ in contexts]
        series_list = [series for _, series in contexts]
        names = [series.names(status) for status, series in contexts]
        target: list[Value] = [status.target_bp / BP_PER_RATIO for status in statuses]
        current_names: list[str] = []
        current: list[Value] = []
        eligible_names: list[str] = []
        eligible: list[Value] = []
        effective_names: list[str] = []
        effective: list[Value] = []
        for status, series, n in zip(statuses, series_list, names, strict=True):
            if status.metric_bp is not None:
                current_names.append(n.current)
                current.append(status.metric_bp / BP_PER_RATIO)
            snap = status.snapshot
            if snap is not None:
                for node, size in sorted(snap.eligible_bytes.items()):
                    eligible_names.append(series.eligible_name(node))
                    eligible.append(size)
                effective_names.append(n.effective)
                effective.append(snap.effective_quota_bytes)
        quota: list[Value] = [status.quota_bytes for status in statuses]
        tried: list[Value] = [series.totals[0] for series in series_list]
        applied: list[Value] = [series.totals[1] for series in series_list]
        exceeds: list[Value] = [series.totals[2] for series in series_list]
        up: list[Value] = [1 if status.up else 0 for status in statuses]
        restarts: list[Value] = [status.restarts for status in statuses]
        histogram_names = list(chain.from_iterable(n.histogram for n in names))
        histogram = list(chain.from_iterable(series.histogram for series in series_list))
        family = self._renderer.family
        family(
            out,
            "damond_goal_target_ratio",
            "gauge",
            "The goal's target value as a ratio (basis points / 10000).",
            [n.target for n in names],
            target,
        )
        family(
            out,
            "damond_goal_current_ratio",
            "gauge",
            "The goal metric's last measured value as a ratio (basis points / 10000).",
            current_names,
            current,
        )
        family(
            out,
            "damond_node_eligible_bytes",
            "gauge",
            "Bytes on the node matching the context's scheme access pattern.",
            eligible_names,
            eligible,
        )
        family(
            out,
            "damond_quota_bytes",
            "gauge",
            "Size quota damond set for the scheme, in bytes per reset interval.",
            [n.quota for n in names],
            quota,
        )
        family(
            out,
            "damond_quota_effective_bytes",
            "gauge",
            "Size quota the kernel is using, in bytes per reset interval.",
            effective_names,
            effective,
        )
        family(
            out,
            "damond_scheme_tried_bytes_total",
            "counter",
            "Bytes the scheme tried to act on.",
            [n.tried for n in names],
            tried,
        )
        family(
            out,
            "damond_scheme_applied_bytes_total",
            "counter",
            "Bytes the scheme migrated.",
            [n.applied for n in names],
            applied,
        )
        family(
            out,
            "damond_scheme_quota_exceeds_total",
            "counter",
            "Times the scheme's quota was exhausted.",
            [n.exceeds for n in names],
            exceeds,
        )
        family(
            out,
            "damond_context_up",
            "gauge",
            "1 while the context's loop runs and its kdamond is on.",
            [n.up for n in names],
            up,
        )
        family(
            out,
            "damond_context_restarts_total",
            "counter",
            "Times the context's loop failed and was restarted.",
            [n.restarts for n in names],
            restarts,
        )
        family(
            out,
            "damond_control_iteration_seconds",
            "histogram",
            "Duration of one control iteration (measure, decide, apply).",
            histogram_names,
            histogram,
        )

    def _render_vmstat(self, out: list[str]) -> None:
        counters = self.backend.tiering_counters()
        for name in sorted(counters):
            metric = f"damond_vmstat_{name}_total"
            self._renderer.family(
                out,
                metric,
                "counter",
                f"The machine's {name} (pages; /proc/vmstat on a real host).",
                [metric],
                [counters[name]],
            )
