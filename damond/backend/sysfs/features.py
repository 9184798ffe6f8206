"""What the running kernel's DAMON supports, found by what files exist and what
values are accepted inside a kdamond damond owns (never a foreign one)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from damond.backend.sysfs.io import Session, SysfsError


@dataclass(frozen=True, slots=True)
class Features:
    migrate_hot: bool = False
    target_nid: bool = False
    quota_goals: bool = False
    goal_nid: bool = False
    goal_tuner: bool = False
    goal_complement: bool = False
    node_eligible_mem_bp: bool = False
    effective_bytes: bool = False
    tried_bytes: bool = False
    nr_snapshots: bool = False
    core_filters: bool = False
    filter_allow: bool = False
    addr_unit: bool = False
    refresh_ms: bool = False
    dests: bool = False
    verified: bool = True
    """False when probed by file presence only (no idle kdamond to write into)."""

    def table(self) -> dict[str, bool]:
        return {k: v for k, v in asdict(self).items() if k != "verified"}


def _accepts(s: Session, path: Path, value: str, restore: str) -> bool:
    try:
        s.write(path, value)
    except SysfsError:
        return False
    s.write(path, restore)
    return True


def probe(s: Session, kdamond: Path) -> Features:
    """Probe inside ``kdamond`` (damond's own, off): stages a scratch context and
    removes it again, leaving ``contexts/nr_contexts`` at 0."""
    s.write(kdamond / "contexts/nr_contexts", "1")
    ctx = kdamond / "contexts/0"
    s.write(ctx / "schemes/nr_schemes", "1")
    scheme = ctx / "schemes/0"
    quotas = scheme / "quotas"
    quota_goals = s.exists(quotas / "goals/nr_goals")
    goal_nid = goal_complement = eligible = False
    if quota_goals:
        s.write(quotas / "goals/nr_goals", "1")
        goal = quotas / "goals/0"
        goal_nid = s.exists(goal / "nid")
        goal_complement = s.exists(goal / "complement")
        eligible = _accepts(s, goal / "target_metric", "node_eligible_mem_bp", "user_input")
    core = s.exists(scheme / "core_filters")
    filters = scheme / ("core_filters" if core else "filters")
    s.write(filters / "nr_filters", "1")
    allow = s.exists(filters / "0/allow")
    features = Features(
        migrate_hot=_accepts(s, scheme / "action", "migrate_hot", "stat"),
        target_nid=s.exists(scheme / "target_nid"),
        quota_goals=quota_goals,
        goal_nid=goal_nid,
        goal_tuner=s.exists(quotas / "goal_tuner"),
        goal_complement=goal_complement,
        node_eligible_mem_bp=eligible,
        effective_bytes=s.exists(quotas / "effective_bytes"),
        tried_bytes=s.exists(scheme / "tried_regions/total_bytes"),
        nr_snapshots=s.exists(scheme / "stats/nr_snapshots"),
        core_filters=core,
        filter_allow=allow,
        addr_unit=s.exists(ctx / "addr_unit"),
        refresh_ms=s.exists(kdamond / "refresh_ms"),
        dests=s.exists(scheme / "dests"),
    )
    s.write(ctx / "schemes/nr_schemes", "0")
    s.write(kdamond / "contexts/nr_contexts", "0")
    return features


def probe_by_presence(s: Session, kdamond: Path) -> Features:
    """Read-only probe of a running kdamond damond owns (re-adopted, no idle one left).

    ``node_eligible_mem_bp`` came with ``fail_charge_denom`` (both 7.2), and
    ``migrate_hot`` with ``target_nid`` (both 6.11).
    """
    ctx = kdamond / "contexts/0"
    scheme = ctx / "schemes/0"
    quotas = scheme / "quotas"
    goal = quotas / "goals/0"
    core = s.exists(scheme / "core_filters")
    filters = scheme / ("core_filters" if core else "filters")
    return Features(
        migrate_hot=s.exists(scheme / "target_nid"),
        target_nid=s.exists(scheme / "target_nid"),
        quota_goals=s.exists(quotas / "goals/nr_goals"),
        goal_nid=s.exists(goal / "nid"),
        goal_tuner=s.exists(quotas / "goal_tuner"),
        goal_complement=s.exists(goal / "complement"),
        node_eligible_mem_bp=s.exists(quotas / "fail_charge_denom"),
        effective_bytes=s.exists(quotas / "effective_bytes"),
        tried_bytes=s.exists(scheme / "tried_regions/total_bytes"),
        nr_snapshots=s.exists(scheme / "stats/nr_snapshots"),
        core_filters=core,
        filter_allow=s.exists(filters / "0/allow"),
        addr_unit=s.exists(ctx / "addr_unit"),
        refresh_ms=s.exists(kdamond / "refresh_ms"),
        dests=s.exists(scheme / "dests"),
        verified=False,
    )
