"""A context's goal as the metrics and ``/status`` show it: its metric, node and cgroup
(the labels a dashboard groups workloads by), and its target and value in the metric's
own unit (basis points, or microseconds of stall).

The goal in force is the running context's configuration; the runtime hands it in as
a :data:`GoalSource`, so that a goal a policy added or changed shows as it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from damond.config import GoalConfig
from damond.control.status import ContextStatus
from damond.model import damon as model

GoalSource = Callable[[str], GoalConfig | None]
"""The goal in force of a context, by name; None when not known (then the status's)."""


def no_goals(_: str) -> GoalConfig | None:
    """The goal source without a running daemon: the statuses say what they have."""
    return None


@dataclass(frozen=True, slots=True)
class ShownGoal:
    metric: str
    node: int | None
    """The goal's node; None for a metric of no node (``active_mem_bp``, stall)."""
    cgroup: str
    """The cgroup of a ``node_memcg_*`` goal; empty for the others."""
    target: int
    """The target in the metric's unit."""
    in_basis_points: bool
    """False: the target and value are microseconds (``some_mem_psi_us``)."""

    @property
    def node_label(self) -> str:
        return "" if self.node is None else str(self.node)


def shown_goal(status: ContextStatus, goal: GoalConfig | None) -> ShownGoal:
    """``goal`` as shown, or what ``status`` tells of it when the goal is not known."""
    name = goal.metric if goal is not None else status.goal_metric
    try:
        metric: model.GoalMetric | None = model.GoalMetric(name)
    except ValueError:
        metric = None
    takes_nid = metric is None or metric.takes_nid
    in_bp = metric is None or metric.in_basis_points
    if goal is None:
        node = status.goal_node if takes_nid else None
        return ShownGoal(name, node, "", status.target_bp, in_bp)
    return ShownGoal(name, goal.nid if takes_nid else None, goal.path, goal.target, in_bp)
