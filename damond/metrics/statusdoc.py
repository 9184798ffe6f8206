"""``/status``: every context's goal, measurement, quota and state as JSON, and who set
its target, so that an operator sees why a target is what it is.

Which layer set a target (the configuration file, or a policy of the fleet, the
group or the host, with its generation) is known to the policy channel; the
runtime hands it in as a :data:`TargetSource`, so that metrics need not know
how policies are merged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from damond.control.status import ContextStatus
from damond.metrics.goals import GoalSource, no_goals, shown_goal


@dataclass(frozen=True)
class TargetLayer:
    """Where a context's target comes from: ``config`` (the file) or a policy scope."""

    layer: str
    generation: int | None = None


CONFIG_LAYER = TargetLayer("config")

TargetSource = Callable[[str], TargetLayer]
"""The layer that set a context's target, by context name."""


def config_only(_: str) -> TargetLayer:
    """The target source without a policy channel: every target is the file's."""
    return CONFIG_LAYER


def status_document(
    statuses: Mapping[str, ContextStatus],
    target_source: TargetSource,
    goals: GoalSource = no_goals,
) -> dict[str, Any]:
    """The JSON body of ``/status``; a goal's target and value are in basis points
    (``*_bp``) or, for stall, in microseconds (``*_us``), the other null."""
    now = time.monotonic()
    contexts = []
    for name, st in statuses.items():
        source = target_source(name)
        goal = shown_goal(st, goals(name))
        bp = goal.in_basis_points
        last = st.last_iteration_monotonic
        contexts.append(
            {
                "name": name,
                "goal_metric": goal.metric,
                "node": goal.node,
                "cgroup": goal.cgroup or None,
                "target_bp": goal.target if bp else None,
                "target_us": None if bp else goal.target,
                "target_set_by": {"layer": source.layer, "generation": source.generation},
                "metric_bp": st.metric_bp if bp else None,
                "metric_us": None if bp else st.metric_bp,
                "quota_bytes": st.quota_bytes,
                "up": st.up,
                "held": st.held,
                "held_reason": st.held_reason if st.held else None,
                "last_error": st.last_error,
                "iterations": st.iterations,
                "restarts": st.restarts,
                "last_iteration_age_s": None if last is None else round(now - last, 3),
            }
        )
    return {"contexts": contexts}


COLUMNS = (
    ("CONTEXT", lambda c: c["name"]),
    ("GOAL", lambda c: _goal(c)),
    ("TARGET", lambda c: _value(c, "target")),
    ("SET BY", lambda c: _layer(c["target_set_by"])),
    ("METRIC", lambda c: _value(c, "metric")),
    ("QUOTA", lambda c: _bytes(c["quota_bytes"])),
    ("ITER", lambda c: str(c["iterations"])),
    ("STATE", lambda c: _state(c)),
)


def _goal(context: Mapping[str, Any]) -> str:
    """``metric@node`` (a metric of no node alone), then the cgroup of a cgroup's goal."""
    node = context.get("node")
    text = str(context["goal_metric"]) + ("" if node is None else f"@{node}")
    cgroup = context.get("cgroup")
    return text if not cgroup else f"{text} {cgroup}"


def _value(context: Mapping[str, Any], field: str) -> str:
    """A target or value in its unit: ``field_bp`` or ``field_us``."""
    for unit in ("bp", "us"):
        value = context.get(f"{field}_{unit}")
        if value is not None:
            return f"{value} {unit}"
    return "-"


def _layer(source: Mapping[str, Any]) -> str:
    generation = source.get("generation")
    return str(source["layer"]) + ("" if generation is None else f" (gen {generation})")


def _bytes(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _state(context: Mapping[str, Any]) -> str:
    state = "up" if context["up"] else "down"
    if context["held"]:
        state += f", held ({context['held_reason'] or 'unspecified'})"
    if context["last_error"]:
        state += f", last error: {context['last_error']}"
    return state


def status_table(document: Mapping[str, Any]) -> str:
    """``/status`` as the table ``damond status`` prints."""
    rows = [[header for header, _ in COLUMNS]]
    rows += [[str(cell(c)) for _, cell in COLUMNS] for c in document.get("contexts", [])]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    lines = [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    ]
    if len(rows) == 1:
        lines.append("(no contexts)")
    return "\n".join(line.rstrip() for line in lines)
