"""The daemon's Prometheus metrics (names and labels as in docs/design.md).

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
from pathlib import Path

from damond import __version__
from damond.backend.base import Backend, SchemeStats
from damond.exposition import TextRenderer, Value, labels
from damond.loop import ContextStatus
from damond.vmstat import TIERING_COUNTERS, VMSTAT_PATH, read_tiering_counters

ITERATION_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
POLICY_SCOPES = ("fleet", "group", "host")
POLICY_RESULTS = ("applied", "stale", "duplicate", "rejected")
BP_PER_RATIO = 10_000

_BUCKET_LABELS = (*(repr(b) for b in ITERATION_BUCKETS_S), "+Inf")


def _cumulative(stats: SchemeStats) -> tuple[int, int, int]:
    return (stats.sz_tried, stats.sz_applied, stats.qt_exceeds)


@dataclass
class _ContextSeries:
    """What the exporter accumulates for one context between scrapes."""

    name: str
    last_raw: tuple[int, int, int] = (0, 0, 0)
    offset: tuple[int, int, int] = (0, 0, 0)
    buckets: list[int] = field(default_factory=lambda: [0] * len(_BUCKET_LABELS))
    seconds_sum: float = 0.0
    sample_names: dict[str, str] = field(default_factory=dict)
    goal_key: tuple[str, int] | None = None

    def counters(self) -> tuple[int, int, int]:
        raw, off = self.last_raw, self.offset
        return (raw[0] + off[0], raw[1] + off[1], raw[2] + off[2])

    def names(self, status: ContextStatus) -> dict[str, str]:
        """Sample names with labels for this context, rebuilt when its goal changes."""
        goal_key = (status.goal_metric, status.goal_node)
        if goal_key != self.goal_key:
            ctx = labels(context=self.name)
            goal = labels(context=self.name, goal_metric=status.goal_metric, node=status.goal_node)
            self.sample_names = {
                "target": "damond_goal_target_ratio" + goal,
                "current": "damond_goal_current_ratio" + goal,
                "quota": "damond_quota_bytes" + ctx,
                "effective": "damond_quota_effective_bytes" + ctx,
                "tried": "damond_scheme_tried_bytes_total" + ctx,
                "applied": "damond_scheme_applied_bytes_total" + ctx,
                "exceeds": "damond_scheme_quota_exceeds_total" + ctx,
                "up": "damond_context_up" + ctx,
                "restarts": "damond_context_restarts_total" + ctx,
                "sum": "damond_control_iteration_seconds_sum" + ctx,
                "count": "damond_control_iteration_seconds_count" + ctx,
            }
            for i, le in enumerate(_BUCKET_LABELS):
                self.sample_names[f"le{i}"] = "damond_control_iteration_seconds_bucket" + labels(
                    context=self.name, le=le
                )
            self.goal_key = goal_key
        return self.sample_names


class DaemonMetrics:
    def __init__(
        self,
        backend: Backend,
        mqtt_enabled: bool,
        vmstat_path: Path = VMSTAT_PATH,
    ) -> None:
        self.backend = backend
        self.mqtt_enabled = mqtt_enabled
        self.vmstat_path = vmstat_path
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
            raw = _cumulative(status.snapshot.stats)
            last = series.last_raw
            if raw[0] < last[0] or raw[1] < last[1] or raw[2] < last[2]:
                # the kernel's stats started again (kdamond or context restart)
                series.offset = series.counters()
            series.last_raw = raw
        if math.isfinite(seconds) and seconds >= 0:
            buckets = series.buckets
            for i in range(bisect.bisect_left(ITERATION_BUCKETS_S, seconds), len(buckets)):
                buckets[i] += 1
            series.seconds_sum += seconds

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
        family = self._renderer.family
        names = [series.names(status) for status, series in contexts]

        def per_context(key: str) -> list[str]:
            return [n[key] for n in names]

        target = [status.target_bp / BP_PER_RATIO for status, _ in contexts]
        family(
            out,
            "damond_goal_target_ratio",
            "gauge",
            "The goal's target value as a ratio (basis points / 10000).",
            per_context("target"),
            target,
        )
        measured = [(n, s.metric_bp) for n, (s, _) in zip(names, contexts, strict=True)]
        family(
            out,
            "damond_goal_current_ratio",
            "gauge",
            "The goal metric's last measured value as a ratio (basis points / 10000).",
            [n["current"] for n, bp in measured if bp is not None],
            [bp / BP_PER_RATIO for _, bp in measured if bp is not None],
        )
        eligible_names: list[str] = []
        eligible: list[Value] = []
        for status, series in contexts:
            if status.snapshot is None:
                continue
            for node, size in sorted(status.snapshot.eligible_bytes.items()):
                eligible_names.append(
                    f"damond_node_eligible_bytes{labels(context=series.name, node=node)}"
                )
                eligible.append(size)
        family(
            out,
            "damond_node_eligible_bytes",
            "gauge",
            "Bytes on the node matching the context's scheme access pattern.",
            eligible_names,
            eligible,
        )
        quota = [status.quota_bytes for status, _ in contexts]
        family(
            out,
            "damond_quota_bytes",
            "gauge",
            "Size quota damond set for the scheme, in bytes per reset interval.",
            per_context("quota"),
            quota,
        )
        snapped = [
            (n, s.snapshot.effective_quota_bytes)
            for n, (s, _) in zip(names, contexts, strict=True)
            if s.snapshot is not None
        ]
        family(
            out,
            "damond_quota_effective_bytes",
            "gauge",
            "Size quota the kernel is using, in bytes per reset interval.",
            [n["effective"] for n, _ in snapped],
            [q for _, q in snapped],
        )
        counters = [series.counters() for _, series in contexts]
        for i, (key, name, help_text) in enumerate(
            (
                ("tried", "damond_scheme_tried_bytes_total", "Bytes the scheme tried to act on."),
                ("applied", "damond_scheme_applied_bytes_total", "Bytes the scheme migrated."),
                (
                    "exceeds",
                    "damond_scheme_quota_exceeds_total",
                    "Times the scheme's quota was exhausted.",
                ),
            )
        ):
            column: list[Value] = [c[i] for c in counters]
            family(out, name, "counter", help_text, per_context(key), column)
        up: list[Value] = [int(status.up) for status, _ in contexts]
        family(
            out,
            "damond_context_up",
            "gauge",
            "1 while the context's loop runs and its kdamond is on.",
            per_context("up"),
            up,
        )
        restarts: list[Value] = [status.restarts for status, _ in contexts]
        family(
            out,
            "damond_context_restarts_total",
            "counter",
            "Times the context's loop failed and was restarted.",
            per_context("restarts"),
            restarts,
        )
        hist_names: list[str] = []
        hist: list[Value] = []
        bucket_keys = [f"le{i}" for i in range(len(_BUCKET_LABELS))]
        for n, (_, series) in zip(names, contexts, strict=True):
            hist_names += [n[k] for k in bucket_keys]
            hist_names += (n["sum"], n["count"])
            hist += series.buckets
            hist += (series.seconds_sum, series.buckets[-1])
        family(
            out,
            "damond_control_iteration_seconds",
            "histogram",
            "Duration of one control iteration (measure, decide, apply).",
            hist_names,
            hist,
        )

    def _render_vmstat(self, out: list[str]) -> None:
        counters = read_tiering_counters(self.vmstat_path)
        for name in TIERING_COUNTERS:
            if name in counters:
                metric = f"damond_vmstat_{name}_total"
                self._renderer.family(
                    out,
                    metric,
                    "counter",
                    f"The host's /proc/vmstat {name} (pages).",
                    [metric],
                    [counters[name]],
                )
