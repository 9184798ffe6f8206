"""What the running kernel's DAMON supports, found by what files exist and what
values are accepted inside a kdamond damond owns (never a foreign one)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from damond.backend.sysfs import paths
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


def _by_files(s: Session, kdamond: Path, core: bool) -> Features:
    """What scheme 0 of ``kdamond`` (and its goal 0 and filter 0, if staged) shows by
    which files exist; ``migrate_hot`` and ``node_eligible_mem_bp`` are the caller's."""
    return Features(
        target_nid=s.exists(kdamond / paths.scheme_file(0, "target_nid")),
        quota_goals=s.exists(kdamond / paths.nr_goals(0)),
        goal_nid=s.exists(kdamond / paths.goal(0, 0, "nid")),
        goal_tuner=s.exists(kdamond / paths.quota(0, "goal_tuner")),
        goal_complement=s.exists(kdamond / paths.goal(0, 0, "complement")),
        effective_bytes=s.exists(kdamond / paths.quota(0, "effective_bytes")),
        tried_bytes=s.exists(kdamond / paths.tried_total_bytes(0)),
        nr_snapshots=s.exists(kdamond / paths.stat(0, "nr_snapshots")),
        core_filters=core,
        filter_allow=s.exists(kdamond / paths.filter_file(0, core, 0, "allow")),
        addr_unit=s.exists(kdamond / paths.ADDR_UNIT),
        refresh_ms=s.exists(kdamond / paths.REFRESH_MS),
        dests=s.exists(kdamond / paths.scheme_file(0, "dests")),
    )


def probe(s: Session, kdamond: Path) -> Features:
    """Probe inside ``kdamond`` (damond's own, off): stages a scratch context and
    removes it again, leaving ``contexts/nr_contexts`` at 0."""
    s.write(kdamond / paths.NR_CONTEXTS, "1")
    s.write(kdamond / paths.NR_SCHEMES, "1")
    eligible = False
    if s.exists(kdamond / paths.nr_goals(0)):
        s.write(kdamond / paths.nr_goals(0), "1")
        metric = kdamond / paths.goal(0, 0, "target_metric")
        eligible = _accepts(s, metric, "node_eligible_mem_bp", "user_input")
    core = s.exists(kdamond / paths.filters(0, core=True))
    s.write(kdamond / paths.nr_filters(0, core), "1")
    features = replace(
        _by_files(s, kdamond, core),
        migrate_hot=_accepts(s, kdamond / paths.scheme_file(0, "action"), "migrate_hot", "stat"),
        node_eligible_mem_bp=eligible,
    )
    s.write(kdamond / paths.NR_SCHEMES, "0")
    s.write(kdamond / paths.NR_CONTEXTS, "0")
    return features


def probe_by_presence(s: Session, kdamond: Path) -> Features:
    """Read-only probe of a running kdamond damond owns (re-adopted, no idle one left).

    ``node_eligible_mem_bp`` came with ``fail_charge_denom`` (both 7.2), and
    ``migrate_hot`` with ``target_nid`` (both 6.11).
    """
    features = _by_files(s, kdamond, s.exists(kdamond / paths.filters(0, core=True)))
    return replace(
        features,
        migrate_hot=features.target_nid,
        node_eligible_mem_bp=s.exists(kdamond / paths.quota(0, "fail_charge_denom")),
        verified=False,
    )
