"""What ``damond check`` says of the contexts: each one's moves between tiers, the goals
contexts share, and dead bands raised to what one measurement step resolves."""

from __future__ import annotations

from damond.config import Settings
from damond.config.checks import deadband_notes
from damond.control import workload
from damond.control.pageclass import PageClass
from damond.control.plan import GoalKey
from damond.control.tiers import Tiers
from damond.model import damon as model


def check_lines(settings: Settings, tiers: Tiers | None = None) -> list[str]:
    """The lines ``damond check`` prints after the backend's features."""
    if tiers is None and settings.backend == "simulated":
        tiers = Tiers.of_simulation(settings.simulation)
    tiers = tiers or Tiers()
    lines = ["contexts:"]
    goals: dict[GoalKey, list[str]] = {}
    for ctx in settings.contexts:
        goal = ctx.goal
        metric = model.GoalMetric(goal.metric)
        verb = "raises" if workload.raises_value(ctx, tiers.tier_by_node) else "lowers"
        page_class = PageClass.of(ctx)
        of = _of(metric, goal.nid, goal.path, tiers)
        unit = "bp" if metric.in_basis_points else "us"
        lines.append(
            f"  {ctx.name}: {tiers.route(ctx.node, workload.dest(ctx))} of "
            f"{page_class.describe()}; {verb} {goal.metric}{of} towards {goal.target} {unit}"
        )
        memory = metric not in workload.SHARE_METRICS
        key = GoalKey(
            workload.canonical(metric),
            goal.nid if metric.takes_nid else -1,
            None if memory else page_class,
            goal.path,
        )
        goals.setdefault(key, []).append(ctx.name)
    for key, names in goals.items():
        if len(names) > 1:
            of = _of(model.GoalMetric(key.metric), key.nid, key.path, tiers)
            lines.append(
                f"  shared goal: {', '.join(names)} steer {key.metric}{of} "
                "together (one view, one gap split between them)"
            )
    lines.extend(f"note: {note}" for note in deadband_notes(settings))
    return lines


def _of(metric: model.GoalMetric, nid: int, path: str, tiers: Tiers) -> str:
    """`` of node 0 (tier 0)``, with the cgroup of a cgroup's metric; empty for a metric
    of the whole machine."""
    cgroup = f" for cgroup {path}" if metric.takes_path else ""
    return f" of {tiers.node(nid)}{cgroup}" if metric.takes_nid else ""
