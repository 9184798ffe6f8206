"""The exported metric families, one row each, in exposition order.

The names, labels and types are a contract (the README's Metrics section). A
per-context metric is one :class:`ContextFamily` row: its value comes from the
context's live status or from what the exporter accumulated for it
(:class:`~damond.metrics.state.ContextSeries`); a row whose value is None for a
context has no sample for it.
"""

from __future__ import annotations

from damond import __version__
from damond.metrics.rows import (
    ContextFamily,
    ContextHistogram,
    ContextLabels,
    ContextNodeFamily,
    Contexts,
    CounterFamilies,
    Family,
    GoalFamily,
    HostFamily,
    Sample,
)
from damond.metrics.state import ITERATION_BUCKETS_S, HostState
from damond.model.units import BP_SCALE

BY_CONTEXT = ContextLabels(("context",), lambda status, _: (status.name,))
BY_HOLD = ContextLabels(
    ("context", "reason"),
    lambda status, _: (status.name, (status.held_reason or "unspecified") if status.held else ""),
)
"""A context held still carries why in ``reason``; one acting has an empty reason."""
BY_GOAL = ContextLabels(
    ("context", "goal_metric", "node", "cgroup"),
    lambda status, goal: (status.name, goal.metric, goal.node_label, goal.cgroup),
)
"""A goal's metric, node (empty for a metric of no node) and cgroup (empty but for the
``node_memcg_*`` metrics): what a dashboard tells workloads apart by."""
US_PER_S = 1_000_000


def _build_info(host: HostState, _: Contexts) -> list[Sample]:
    backend = host.backend
    return [((__version__, backend.name, backend.kernel_version()), 1)]


def _node_capacity(_: HostState, contexts: Contexts) -> list[Sample]:
    """The nodes the contexts measured (a host-wide fact each context reports)."""
    capacity: dict[int, int] = {}
    for status, _series in contexts:
        if status.snapshot is not None:
            capacity.update(status.snapshot.capacity_bytes)
    return [((node,), capacity[node]) for node in sorted(capacity)]


FAMILIES: tuple[Family, ...] = (
    # -- the host ---------------------------------------------------------------
    HostFamily(
        "damond_build_info",
        "gauge",
        "Always 1; the labels say which damond drives which backend and kernel.",
        ("version", "backend", "kernel"),
        _build_info,
    ),
    HostFamily(
        "damond_kernel_feature_supported",
        "gauge",
        "1 if the kernel's DAMON has the feature, 0 if not.",
        ("feature",),
        lambda host, _: [((f,), int(ok)) for f, ok in sorted(host.backend.features().items())],
    ),
    HostFamily(
        "damond_mqtt_enabled",
        "gauge",
        "1 if the MQTT policy channel is configured to run.",
        (),
        lambda host, _: [((), int(host.mqtt_enabled))],
    ),
    HostFamily(
        "damond_mqtt_connected",
        "gauge",
        "1 while connected to the MQTT broker (always 0 with MQTT disabled).",
        (),
        lambda host, _: [((), int(host.mqtt_connected))],
    ),
    HostFamily(
        "damond_policy_updates_total",
        "counter",
        "Policy documents received, by scope and result.",
        ("scope", "result"),
        lambda host, _: sorted(host.policy_updates.items()),
    ),
    HostFamily(
        "damond_policy_generation",
        "gauge",
        "Generation of the last policy applied per scope (0: none yet).",
        ("scope",),
        lambda host, _: [((s,), g) for s, g in sorted(host.policy_generations.items())],
    ),
    HostFamily(
        "damond_node_capacity_bytes",
        "gauge",
        "Memory capacity of the NUMA node.",
        ("node",),
        _node_capacity,
    ),
    # -- the contexts -----------------------------------------------------------
    GoalFamily(
        "damond_goal_target_ratio",
        "gauge",
        "The goal's target value as a ratio (basis points / 10000).",
        BY_GOAL,
        True,
        lambda _, goal: goal.target / BP_SCALE,
    ),
    GoalFamily(
        "damond_goal_current_ratio",
        "gauge",
        "The goal metric's last measured value as a ratio (basis points / 10000).",
        BY_GOAL,
        True,
        lambda status, _: None if status.metric_bp is None else status.metric_bp / BP_SCALE,
    ),
    GoalFamily(
        "damond_goal_target_seconds",
        "gauge",
        "The target of a stall goal (some_mem_psi_us): seconds of memory stall per "
        "quota reset interval.",
        BY_GOAL,
        False,
        lambda _, goal: goal.target / US_PER_S,
    ),
    GoalFamily(
        "damond_goal_current_seconds",
        "gauge",
        "A stall goal's last measured value: seconds of memory stall per quota reset interval.",
        BY_GOAL,
        False,
        lambda status, _: None if status.metric_bp is None else status.metric_bp / US_PER_S,
    ),
    ContextNodeFamily(
        "damond_node_eligible_bytes",
        "gauge",
        "Bytes on the node matching the context's scheme access pattern.",
        BY_CONTEXT,
        lambda status, _: {} if status.snapshot is None else status.snapshot.eligible_bytes,
    ),
    ContextFamily(
        "damond_quota_bytes",
        "gauge",
        "Size quota damond set for the scheme, in bytes per reset interval.",
        BY_CONTEXT,
        lambda status, _: status.quota_bytes,
    ),
    ContextFamily(
        "damond_quota_effective_bytes",
        "gauge",
        "Size quota the kernel is using, in bytes per reset interval.",
        BY_CONTEXT,
        lambda status, _: (
            None if status.snapshot is None else status.snapshot.effective_quota_bytes
        ),
    ),
    ContextFamily(
        "damond_scheme_tried_bytes_total",
        "counter",
        "Bytes the scheme tried to act on.",
        BY_CONTEXT,
        lambda _, series: series.totals[0],
    ),
    ContextFamily(
        "damond_scheme_applied_bytes_total",
        "counter",
        "Bytes the scheme migrated.",
        BY_CONTEXT,
        lambda _, series: series.totals[1],
    ),
    ContextFamily(
        "damond_scheme_quota_exceeds_total",
        "counter",
        "Times the scheme's quota was exhausted.",
        BY_CONTEXT,
        lambda _, series: series.totals[2],
    ),
    ContextFamily(
        "damond_context_up",
        "gauge",
        "1 while the context's loop runs and its kdamond is on.",
        BY_CONTEXT,
        lambda status, _: int(status.up),
    ),
    ContextFamily(
        "damond_context_held",
        "gauge",
        "1 while the context is held still (reason: why), 0 while it acts.",
        BY_HOLD,
        lambda status, _: int(status.held),
    ),
    ContextFamily(
        "damond_context_restarts_total",
        "counter",
        "Times the context's loop failed and was restarted.",
        BY_CONTEXT,
        lambda status, _: status.restarts,
    ),
    ContextHistogram(
        "damond_control_iteration_seconds",
        "Duration of one control iteration (measure, decide, apply).",
        BY_CONTEXT,
        ITERATION_BUCKETS_S,
        lambda _, series: series.histogram,
    ),
    # -- the machine ------------------------------------------------------------
    CounterFamilies(
        "damond_vmstat_{}_total",
        "The machine's {} (pages; /proc/vmstat on a real host).",
        lambda host: host.backend.tiering_counters(),
    ),
)
