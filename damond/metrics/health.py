"""Liveness of the context loops, as ``/healthz`` (and a watchdog) judge it."""

from __future__ import annotations

from collections.abc import Mapping

from damond.runtime.loop import ContextStatus

STALE_AFTER_INTERVALS = 3


def stale_contexts(
    statuses: Mapping[str, ContextStatus], interval_s: float, now_monotonic: float
) -> list[str]:
    """Names of the contexts without a completed iteration in the last 3 intervals.

    A context that has not completed its first iteration yet counts as stale:
    the daemon is not healthy until every loop has shown it can iterate.
    """
    limit = STALE_AFTER_INTERVALS * interval_s
    return [
        name
        for name, status in statuses.items()
        if status.last_iteration_monotonic is None
        or now_monotonic - status.last_iteration_monotonic > limit
    ]
