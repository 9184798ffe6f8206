"""What the exporter keeps between scrapes.

Scheme counters and iteration durations are accumulated per context as the
loops report them (:class:`ContextSeries`): a scrape sees only the latest
status, so it cannot count. The policy channel's reports and the backend are
host-level (:class:`HostState`).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from damond.backend.base import Backend
from damond.model.measurement import SchemeStats

ITERATION_BUCKETS_S = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 2.5)
Value = int | float
POLICY_SCOPES = ("fleet", "group", "host")
POLICY_RESULTS = ("applied", "stale", "superseded", "duplicate", "rejected")


@dataclass
class ContextSeries:
    """What the exporter accumulates for one context between scrapes."""

    last_raw: tuple[int, int, int] = (0, 0, 0)
    offset: tuple[int, int, int] = (0, 0, 0)
    totals: tuple[int, int, int] = (0, 0, 0)
    """Exported tried bytes, applied bytes and quota exceeds: offset + raw."""
    histogram: list[Value] = field(default_factory=lambda: [0] * (len(ITERATION_BUCKETS_S) + 3))
    """Cumulative counts of the buckets and of ``+Inf``, then the sum and the count."""

    def count(self, stats: SchemeStats) -> None:
        """Take the kernel's cumulative stats, keeping the totals monotonic across resets."""
        raw = (stats.sz_tried, stats.sz_applied, stats.qt_exceeds)
        last = self.last_raw
        if raw[0] < last[0] or raw[1] < last[1] or raw[2] < last[2]:
            # the kernel's stats started again (kdamond or context restart)
            self.offset = self.totals
        self.last_raw = raw
        off = self.offset
        self.totals = (raw[0] + off[0], raw[1] + off[1], raw[2] + off[2])

    def observe(self, seconds: float) -> None:
        """Count one iteration's duration into the histogram."""
        hist = self.histogram
        n_buckets = len(ITERATION_BUCKETS_S) + 1
        for i in range(bisect.bisect_left(ITERATION_BUCKETS_S, seconds), n_buckets):
            hist[i] += 1
        hist[n_buckets] += seconds
        hist[n_buckets + 1] += 1


@dataclass
class HostState:
    """The host-level inputs of a scrape: the backend and the policy channel's reports.

    The policy series start at zero for every scope and result, so that they
    exist before any policy arrives (and with MQTT disabled).
    """

    backend: Backend
    mqtt_enabled: bool
    mqtt_connected: bool = False
    policy_updates: dict[tuple[str, str], int] = field(
        default_factory=lambda: {(s, r): 0 for s in POLICY_SCOPES for r in POLICY_RESULTS}
    )
    policy_generations: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(POLICY_SCOPES, 0)
    )
