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
class MemoryReadings:
    """The machine's memory state that the node, cgroup, LRU and pressure goal metrics
    are computed from: the host's (``/proc``, ``/sys``, cgroupfs) or the simulated
    machine's. Bytes, except the pressure total."""

    node_total_bytes: Mapping[int, int]
    node_free_bytes: Mapping[int, int]
    memcg_node_bytes: Mapping[str, Mapping[int, int]]
    """LRU bytes per node of each cgroup a goal names, by path (``/`` is the root)."""
    active_bytes: int = 0
    inactive_bytes: int = 0
    psi_some_total_us: int = 0
    """The system's cumulative "some" memory stall time (``/proc/pressure/memory``)."""
    problems: tuple[str, ...] = ()
    """What could not be read, each naming its file (a cgroup gone, PSI off); a value
    not read is absent from its mapping, and a goal that needs it is held."""


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
    memory: MemoryReadings | None = None
    """Read when a goal's metric needs it; None for the node-share metrics."""
