"""What ``damond check`` says of the contexts: each one's moves between tiers, the goals
contexts share, and dead bands raised to what one measurement step resolves."""

from __future__ import annotations

from damond.config import Settings
from damond.config.checks import deadband_notes
from damond.control.pageclass import PageClass
from damond.control.tiers import Tiers
from damond.model import damon as model


def check_lines(settings: Settings, tiers: Tiers | None = None) -> list[str]:
    """The lines ``damond check`` prints after the backend's features."""
    if tiers is None and settings.backend == "simulated":
        tiers = Tiers.of_simulation(settings.simulation)
    tiers = tiers or Tiers()
    lines = ["contexts:"]
    goals: dict[tuple[str, int, PageClass], list[str]] = {}
    for ctx in settings.contexts:
        goal = ctx.goal
        verb = "raises" if ctx.direction is model.Direction.RAISES else "lowers"
        page_class = PageClass.of(ctx)
        lines.append(
            f"  {ctx.name}: {tiers.route(ctx.node, ctx.scheme.target_nid)} of "
            f"{page_class.describe()}; {verb} {goal.metric} of {tiers.node(goal.nid)} "
            f"towards {goal.target_bp} bp"
        )
        goals.setdefault((goal.metric, goal.nid, page_class), []).append(ctx.name)
    for (metric, nid, _), names in goals.items():
        if len(names) > 1:
            lines.append(
                f"  shared goal: {', '.join(names)} steer {metric} of {tiers.node(nid)} "
                "together (one view, one gap split between them)"
            )
    lines.extend(f"note: {note}" for note in deadband_notes(settings))
    return lines
