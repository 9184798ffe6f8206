"""Typed model of the DAMON objects damond drives, independent of any backend.

It mirrors the sysfs hierarchy (kdamond > context > scheme > quota > goal) so a
backend can map it one to one onto files, and the simulator onto its dynamics.
Units are the kernel's: bytes, microseconds, milliseconds, basis points,
``nr_accesses`` in samples per aggregation interval and ``age`` in aggregation
intervals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Operations(StrEnum):
    VADDR = "vaddr"
    FVADDR = "fvaddr"
    PADDR = "paddr"


class Action(StrEnum):
    MIGRATE_HOT = "migrate_hot"
    MIGRATE_COLD = "migrate_cold"
    LRU_PRIO = "lru_prio"
    LRU_DEPRIO = "lru_deprio"
    STAT = "stat"

    @property
    def moves_lru(self) -> bool:
        """Whether it moves pages between LRU lists (``lru_prio``: to the active list,
        ``lru_deprio``: to the inactive one) rather than between nodes."""
        return self in (Action.LRU_PRIO, Action.LRU_DEPRIO)


class GoalMetric(StrEnum):
    """Goal metrics damond understands.

    ``node_target_mem_bp`` is the seed RFC's metric (never merged), computed by
    damond; ``node_eligible_mem_bp`` is the one merged in Linux 7.2;
    ``user_input`` is what damond feeds to the kernel's tuner.
    """

    NODE_TARGET_MEM_BP = "node_target_mem_bp"
    NODE_ELIGIBLE_MEM_BP = "node_eligible_mem_bp"
    NODE_MEM_USED_BP = "node_mem_used_bp"
    NODE_MEM_FREE_BP = "node_mem_free_bp"
    NODE_MEMCG_USED_BP = "node_memcg_used_bp"
    NODE_MEMCG_FREE_BP = "node_memcg_free_bp"
    ACTIVE_MEM_BP = "active_mem_bp"
    INACTIVE_MEM_BP = "inactive_mem_bp"
    SOME_MEM_PSI_US = "some_mem_psi_us"
    USER_INPUT = "user_input"

    @property
    def takes_nid(self) -> bool:
        """Whether the metric is of one node (``nid``)."""
        return self not in _NODELESS_METRICS

    @property
    def takes_path(self) -> bool:
        """Whether the metric is of one cgroup (``path``)."""
        return self in (GoalMetric.NODE_MEMCG_USED_BP, GoalMetric.NODE_MEMCG_FREE_BP)

    @property
    def in_basis_points(self) -> bool:
        """False for ``some_mem_psi_us`` (microseconds) and ``user_input``."""
        return self not in (GoalMetric.SOME_MEM_PSI_US, GoalMetric.USER_INPUT)


_NODELESS_METRICS = frozenset(
    {
        GoalMetric.ACTIVE_MEM_BP,
        GoalMetric.INACTIVE_MEM_BP,
        GoalMetric.SOME_MEM_PSI_US,
        GoalMetric.USER_INPUT,
    }
)


class FilterType(StrEnum):
    """DAMOS filter types; ``addr`` and ``target`` act in DAMON's core, the rest in the
    operations layer (the kernel's ``core_filters/`` and ``ops_filters/``)."""

    ANON = "anon"
    MEMCG = "memcg"
    ADDR = "addr"
    TARGET = "target"
    YOUNG = "young"
    HUGEPAGE_SIZE = "hugepage_size"
    UNMAPPED = "unmapped"
    ACTIVE = "active"

    @property
    def is_core(self) -> bool:
        return self in (FilterType.ADDR, FilterType.TARGET)


class GoalTuner(StrEnum):
    CONSIST = "consist"
    TEMPORAL = "temporal"


class Direction(StrEnum):
    """How a scheme's action moves the goal node's metric."""

    RAISES = "raises"  # pages are moved into the goal node
    LOWERS = "lowers"  # pages are moved out of the goal node


@dataclass(frozen=True, slots=True)
class AddressRange:
    """A half-open physical address range ``[start, end)`` in bytes."""

    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Intervals:
    sample_us: int = 5_000
    aggr_us: int = 100_000
    update_us: int = 60_000_000

    @property
    def samples_per_aggr(self) -> int:
        return max(1, self.aggr_us // self.sample_us)


@dataclass(frozen=True, slots=True)
class AccessPattern:
    """Inclusive ranges a region must fall in to be eligible for a scheme."""

    sz_min: int = 0
    sz_max: int = 2**64 - 1
    nr_accesses_min: int = 0
    nr_accesses_max: int = 2**32 - 1
    age_min: int = 0
    age_max: int = 2**32 - 1


@dataclass(frozen=True, slots=True)
class Weights:
    sz_permil: int = 0
    nr_accesses_permil: int = 0
    age_permil: int = 0


@dataclass(frozen=True, slots=True)
class QuotaGoal:
    metric: GoalMetric
    target_value: int
    current_value: int = 0
    nid: int = 0
    path: str = ""
    """The cgroup of the ``node_memcg_*`` metrics, relative to the cgroup root."""


@dataclass(frozen=True, slots=True)
class Filter:
    """One DAMOS filter: pages that match it (or, with ``matching`` False, that do not)
    are allowed or rejected by ``allow``. Fields other than the type's own are unused."""

    type: FilterType
    matching: bool = True
    allow: bool = True
    memcg_path: str = ""
    addr_start: int = 0
    addr_end: int = 0
    min: int = 0
    max: int = 0


@dataclass(frozen=True, slots=True)
class Quota:
    """``bytes`` and ``ms`` of 0 mean "no limit" in DAMON unless goals are set."""

    bytes: int = 0
    ms: int = 0
    reset_interval_ms: int = 1_000
    weights: Weights = field(default_factory=Weights)
    goals: tuple[QuotaGoal, ...] = ()
    goal_tuner: GoalTuner = GoalTuner.CONSIST


@dataclass(frozen=True, slots=True)
class Scheme:
    action: Action
    access_pattern: AccessPattern
    quota: Quota
    target_nid: int = -1
    apply_interval_us: int = 0
    filters: tuple[Filter, ...] = ()


@dataclass(frozen=True, slots=True)
class Context:
    """One DAMON context: its operations, what it watches and its schemes."""

    name: str
    operations: Operations
    intervals: Intervals
    nodes: tuple[int, ...]
    regions: tuple[AddressRange, ...] = ()
    schemes: tuple[Scheme, ...] = ()
    memory_goal: QuotaGoal | None = None
    """The goal damond computes from memory readings (node, cgroup, LRU or pressure
    metrics), whatever the mode; None for the node-share metrics. Never written to the
    kernel: it tells the backend what each snapshot must read."""


IDLE_QUOTA_BYTES = 1
"""The quota that makes a scheme do nothing.

DAMON reads a size quota of 0 as "no limit", so a paused scheme gets 1 byte,
which is below any region's minimum size and therefore always "full".
"""
