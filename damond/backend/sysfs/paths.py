"""Every file of DAMON's sysfs admin tree that damond touches, named in one place.

The tree under ``sysfs.admin_root`` (``/sys/kernel/mm/damon/admin``), as far as
damond uses it; ``<K>`` is a kdamond, ``<S>`` a scheme, ``<G>`` a quota goal,
``<F>`` a filter and ``<R>`` a region. damond runs one context with one target
per kdamond, so those are always ``0``::

    kdamonds/nr_kdamonds
    kdamonds/<K>/state              reads on/off, takes the commands below
    kdamonds/<K>/pid
    kdamonds/<K>/refresh_ms
    kdamonds/<K>/contexts/nr_contexts
    kdamonds/<K>/contexts/0/operations
    kdamonds/<K>/contexts/0/addr_unit
        .../monitoring_attrs/intervals/{sample_us,aggr_us,update_us}
        .../monitoring_attrs/nr_regions/{min,max}
        .../targets/nr_targets
        .../targets/0/regions/nr_regions
        .../targets/0/regions/<R>/{start,end}
        .../schemes/nr_schemes
        .../schemes/<S>/{action,target_nid,apply_interval_us,dests}
        .../schemes/<S>/access_pattern/{sz,nr_accesses,age}/{min,max}
        .../schemes/<S>/quotas/{ms,bytes,reset_interval_ms,effective_bytes,...}
        .../schemes/<S>/quotas/weights/{sz,nr_accesses,age}_permil
        .../schemes/<S>/quotas/goals/nr_goals
        .../schemes/<S>/quotas/goals/<G>/{target_metric,target_value,current_value,nid,path}
        .../schemes/<S>/watermarks/metric
        .../schemes/<S>/{core_filters,ops_filters,filters}/nr_filters
        .../schemes/<S>/{core_filters,ops_filters,filters}/<F>/{type,matching,allow,...}
        .../schemes/<S>/stats/{nr_tried,sz_tried,...,nr_snapshots}
        .../schemes/<S>/tried_regions/total_bytes

Which of them a kernel has is probed in :mod:`damond.backend.sysfs.features`.
Admin-level files are absolute paths; a file inside a kdamond is a string
relative to ``kdamonds/<K>``, the form a layout's entries take.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

Bound = Literal["min", "max"]
SchemeFile = Literal["action", "target_nid", "apply_interval_us", "dests"]
QuotaFile = Literal[
    "ms", "bytes", "reset_interval_ms", "effective_bytes", "goal_tuner", "fail_charge_denom"
]
GoalFile = Literal["target_metric", "target_value", "current_value", "nid", "path", "complement"]
FilterDir = Literal["core_filters", "ops_filters", "filters"]
"""Where a scheme's filters go: DAMON's core layer and the operations layer each have
their directory since Linux 6.15; before, one ``filters`` directory takes both."""
FilterFile = Literal[
    "type", "matching", "allow", "memcg_path", "addr_start", "addr_end", "min", "max"
]
StatFile = Literal["nr_tried", "sz_tried", "nr_applied", "sz_applied", "qt_exceeds", "nr_snapshots"]

# -- state commands (written to kdamonds/<K>/state) -----------------------------------
# ``commit`` makes a running kdamond take every file again; the quota-goal commit
# takes only the goals. The ``update_*`` requests refresh read-only files; where the
# kernel has ``refresh_ms``, it keeps the stats and the effective quota fresh itself.

ON: Final = "on"
OFF: Final = "off"
COMMIT: Final = "commit"
COMMIT_QUOTA_GOALS: Final = "commit_schemes_quota_goals"
UPDATE_STATS: Final = "update_schemes_stats"
UPDATE_EFFECTIVE_QUOTAS: Final = "update_schemes_effective_quotas"
UPDATE_TRIED_BYTES: Final = "update_schemes_tried_bytes"

# -- the admin root ---------------------------------------------------------------------


def kdamonds(admin: Path) -> Path:
    return admin / "kdamonds"


def nr_kdamonds(admin: Path) -> Path:
    """Writing it removes every kdamond and creates that many empty ones."""
    return kdamonds(admin) / "nr_kdamonds"


def kdamond(admin: Path, index: int) -> Path:
    return kdamonds(admin) / str(index)


# -- inside kdamonds/<K> ---------------------------------------------------------------

STATE: Final = "state"
PID: Final = "pid"
REFRESH_MS: Final = "refresh_ms"
NR_CONTEXTS: Final = "contexts/nr_contexts"
CONTEXT: Final = "contexts/0"
OPERATIONS: Final = f"{CONTEXT}/operations"
ADDR_UNIT: Final = f"{CONTEXT}/addr_unit"
NR_TARGETS: Final = f"{CONTEXT}/targets/nr_targets"
NR_REGIONS: Final = f"{CONTEXT}/targets/0/regions/nr_regions"
OBSOLETE_TARGET: Final = f"{CONTEXT}/targets/0/obsolete_target"
"""Linux 6.19+; damond never writes it, its presence dates the kernel."""
NR_SCHEMES: Final = f"{CONTEXT}/schemes/nr_schemes"


def interval(name: Literal["sample_us", "aggr_us", "update_us"]) -> str:
    return f"{CONTEXT}/monitoring_attrs/intervals/{name}"


def nr_regions_bound(bound: Bound) -> str:
    return f"{CONTEXT}/monitoring_attrs/nr_regions/{bound}"


def region(r: int, edge: Literal["start", "end"]) -> str:
    return f"{CONTEXT}/targets/0/regions/{r}/{edge}"


def scheme(s: int) -> str:
    return f"{CONTEXT}/schemes/{s}"


def scheme_file(s: int, name: SchemeFile) -> str:
    """A file (``dests``: a directory) right in scheme ``s``."""
    return f"{scheme(s)}/{name}"


def access_pattern(s: int, attr: Literal["sz", "nr_accesses", "age"], bound: Bound) -> str:
    return f"{scheme(s)}/access_pattern/{attr}/{bound}"


def quota(s: int, name: QuotaFile) -> str:
    return f"{scheme(s)}/quotas/{name}"


def weight(s: int, name: Literal["sz_permil", "nr_accesses_permil", "age_permil"]) -> str:
    return f"{scheme(s)}/quotas/weights/{name}"


def nr_goals(s: int) -> str:
    return f"{scheme(s)}/quotas/goals/nr_goals"


def goal(s: int, g: int, name: GoalFile) -> str:
    return f"{scheme(s)}/quotas/goals/{g}/{name}"


GOAL_CURRENT_VALUE: Final = "/current_value"
"""How every goal's ``current_value`` path ends."""


def watermarks_metric(s: int) -> str:
    return f"{scheme(s)}/watermarks/metric"


def filters(s: int, where: FilterDir) -> str:
    return f"{scheme(s)}/{where}"


def nr_filters(s: int, where: FilterDir) -> str:
    return f"{filters(s, where)}/nr_filters"


def filter_file(s: int, where: FilterDir, f: int, name: FilterFile) -> str:
    return f"{filters(s, where)}/{f}/{name}"


def stat(s: int, name: StatFile) -> str:
    return f"{scheme(s)}/stats/{name}"


SCHEME_STATS: Final[tuple[StatFile, ...]] = (
    "nr_tried",
    "sz_tried",
    "nr_applied",
    "sz_applied",
    "qt_exceeds",
)
"""The cumulative counters of a scheme that a snapshot reports."""


def tried_total_bytes(s: int) -> str:
    """Bytes of the regions scheme ``s`` was tried on, as of the last
    ``update_schemes_tried_bytes``."""
    return f"{scheme(s)}/tried_regions/total_bytes"
