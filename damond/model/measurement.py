"""What a backend reports of a context: its scheme's counters and one measurement."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SchemeStats:
    """Cumulative scheme counters, as the kernel's ``stats/`` directory has them."""

    nr_tried: int = 0
    sz_tried: int = 0
    nr_applied: int = 0
    sz_applied: int = 0
    qt_exceeds: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One measurement of a context, taken at ``time_s`` on the backend's clock."""

    time_s: float
    eligible_bytes: Mapping[int, int]
    """Bytes matching the working scheme's access pattern, per node."""
    capacity_bytes: Mapping[int, int]
    stats: SchemeStats
    quota_bytes: int
    """The size quota damond last set (or the cap, in kernel and native modes)."""
    effective_quota_bytes: int
    """The size quota the kernel is using now (its tuner's output)."""
    running: bool
