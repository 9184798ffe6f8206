"""What the rest of the daemon sees of a context loop, and when a loop counts as silent.

One notion of liveness serves both ``/healthz`` (a context is stale until it
iterates, and while it fails) and the systemd watchdog (a loop waiting out its
backoff is being handled, not stuck).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from damond.model.measurement import Snapshot


@dataclass
class ContextStatus:
    """What the rest of the daemon (exporter, health, watchdog) sees of a loop."""

    name: str
    goal_metric: str
    goal_node: int
    target_bp: int
    up: bool = False
    iterations: int = 0
    restarts: int = 0
    last_iteration_monotonic: float | None = None
    metric_bp: int | None = None
    quota_bytes: int = 0
    snapshot: Snapshot | None = None
    acting: bool = False
    held: bool = False
    held_reason: str | None = None
    """Why the context is held still (a short word such as ``conflict``), None while it acts."""
    move: str | None = None
    """What the context's scheme does between tiers: ``promotion``, ``demotion``, ``move
    within tier N``, or ``move`` while the nodes' tiers are unknown."""
    last_error: str | None = None
    alive_since_monotonic: float | None = None
    """When the loop last (re)started; None while it waits out a backoff after a failure."""
    history: list[tuple[float, int]] = field(default_factory=list)


def silent_contexts(
    statuses: Mapping[str, ContextStatus],
    max_age_s: float,
    now_monotonic: float,
    *,
    starts_count: bool = False,
) -> list[str]:
    """Names of the contexts without progress in the last ``max_age_s`` seconds.

    Progress is a completed iteration: a context that has not completed one yet is
    silent. With ``starts_count`` a (re)start is progress too, and a loop waiting
    out its backoff is not judged at all.
    """
    silent = []
    for name, status in statuses.items():
        last = status.last_iteration_monotonic
        if starts_count:
            since = status.alive_since_monotonic
            if since is None:
                continue
            last = since if last is None else max(since, last)
        if last is None or now_monotonic - last > max_age_s:
            silent.append(name)
    return silent
