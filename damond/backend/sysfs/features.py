"""What the running kernel's DAMON supports, found by what files exist and what
values are accepted inside a kdamond damond owns (never a foreign one).

A goal metric's file tells its Linux release: ``goals/<G>/target_metric`` came with
``some_mem_psi_us`` (6.9), ``goals/<G>/nid`` with ``node_mem_*`` (6.16),
``goals/<G>/path`` with ``node_memcg_*`` (6.19), ``stats/nr_snapshots`` with
``active_mem_bp`` / ``inactive_mem_bp`` (7.0); ``node_eligible_mem_bp`` (7.2) is
probed by writing it. ``core_filters/`` and ``ops_filters/`` came with the
``hugepage_size``, ``unmapped`` and ``active`` filter types (6.15).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from damond.backend.sysfs import paths
from damond.backend.sysfs.io import Session, SysfsError
from damond.model import damon as model

Metric = model.GoalMetric

METRIC_SINCE: dict[model.GoalMetric, str] = {
    Metric.USER_INPUT: "6.8",
    Metric.SOME_MEM_PSI_US: "6.9",
    Metric.NODE_MEM_USED_BP: "6.16",
    Metric.NODE_MEM_FREE_BP: "6.16",
    Metric.NODE_MEMCG_USED_BP: "6.19",
    Metric.NODE_MEMCG_FREE_BP: "6.19",
    Metric.ACTIVE_MEM_BP: "7.0",
    Metric.INACTIVE_MEM_BP: "7.0",
    Metric.NODE_ELIGIBLE_MEM_BP: "7.2",
}
"""The Linux release whose kernel computes each goal metric itself (``node_target_mem_bp``,
never merged, no kernel computes)."""


@dataclass(frozen=True, slots=True)
class Features:
    migrate_hot: bool = False
    target_nid: bool = False
    quota_goals: bool = False
    goal_nid: bool = False
    goal_metrics: bool = False
    goal_path: bool = False
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

    def native_metrics(self) -> frozenset[model.GoalMetric]:
        """The goal metrics this kernel computes itself."""
        has = {
            Metric.USER_INPUT: self.quota_goals,
            Metric.SOME_MEM_PSI_US: self.goal_metrics,
            Metric.NODE_MEM_USED_BP: self.goal_nid,
            Metric.NODE_MEM_FREE_BP: self.goal_nid,
            Metric.NODE_MEMCG_USED_BP: self.goal_path,
            Metric.NODE_MEMCG_FREE_BP: self.goal_path,
            Metric.ACTIVE_MEM_BP: self.goal_metrics and self.nr_snapshots,
            Metric.INACTIVE_MEM_BP: self.goal_metrics and self.nr_snapshots,
            Metric.NODE_ELIGIBLE_MEM_BP: self.node_eligible_mem_bp and self.goal_nid,
        }
        return frozenset(m for m, ok in has.items() if ok)

    def table(self) -> dict[str, bool]:
        """Every feature by name, and every goal metric a kernel can compute by its own
        name (True where this one does)."""
        out = {k: v for k, v in asdict(self).items() if k != "verified"}
        native = self.native_metrics()
        out.update({m.value: m in native for m in METRIC_SINCE if m is not Metric.USER_INPUT})
        return out


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
    where: paths.FilterDir = "core_filters" if core else "filters"
    return Features(
        target_nid=s.exists(kdamond / paths.scheme_file(0, "target_nid")),
        quota_goals=s.exists(kdamond / paths.nr_goals(0)),
        goal_metrics=s.exists(kdamond / paths.goal(0, 0, "target_metric")),
        goal_nid=s.exists(kdamond / paths.goal(0, 0, "nid")),
        goal_path=s.exists(kdamond / paths.goal(0, 0, "path")),
        goal_tuner=s.exists(kdamond / paths.quota(0, "goal_tuner")),
        goal_complement=s.exists(kdamond / paths.goal(0, 0, "complement")),
        effective_bytes=s.exists(kdamond / paths.quota(0, "effective_bytes")),
        tried_bytes=s.exists(kdamond / paths.tried_total_bytes(0)),
        nr_snapshots=s.exists(kdamond / paths.stat(0, "nr_snapshots")),
        core_filters=core,
        filter_allow=s.exists(kdamond / paths.filter_file(0, where, 0, "allow")),
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
    core = s.exists(kdamond / paths.filters(0, "core_filters"))
    s.write(kdamond / paths.nr_filters(0, "core_filters" if core else "filters"), "1")
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
    ``migrate_hot`` with ``target_nid`` (both 6.11). A scheme without goals shows no
    goal files, so their releases are read off files of the same or a later release:
    ``effective_bytes`` (6.9), ``refresh_ms`` (6.17), ``obsolete_target`` (6.19).
    """
    f = _by_files(s, kdamond, s.exists(kdamond / paths.filters(0, "core_filters")))
    goal_path = f.goal_path or f.nr_snapshots or s.exists(kdamond / paths.OBSOLETE_TARGET)
    return replace(
        f,
        goal_metrics=f.goal_metrics or f.effective_bytes,
        goal_nid=f.goal_nid or f.refresh_ms or goal_path,
        goal_path=goal_path,
        migrate_hot=f.target_nid,
        node_eligible_mem_bp=s.exists(kdamond / paths.quota(0, "fail_charge_denom")),
        verified=False,
    )
