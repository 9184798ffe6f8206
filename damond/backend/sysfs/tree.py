"""The files of one damond kdamond: what to write, writing only what differs, read-back.

Layout of a context (one kdamond, one paddr context):

- one target whose regions are every node's online memory;
- scheme 0, the working scheme, restricted to the context's source nodes by
  core ``addr`` filters that reject every other node's ranges, then the configured
  filters (:mod:`damond.backend.sysfs.filters`);
- schemes 1..N, quota-less ``stat`` schemes with the working scheme's access
  pattern, one per node and restricted to it the same way: they measure the
  eligible bytes of each node (``tried_regions`` of a quota-limited scheme
  would only show what fitted in its quota).

Reject-only filters (``matching`` Y, ``allow`` N) mean the same before and
after the kernel's 6.14 ``allow`` semantics. Every value is plain decimal: the
kernel parses a leading 0 as octal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from damond.backend.sysfs import filters, paths
from damond.backend.sysfs.features import Features
from damond.backend.sysfs.io import Session
from damond.backend.sysfs.topology import Topology
from damond.config import SysfsConfig
from damond.model import damon as model

Entry = tuple[str, str]
"""(path relative to ``kdamonds/<K>``, value as the kernel reads it back)."""

WORKING_SCHEME = 0


@dataclass(frozen=True, slots=True)
class Layout:
    entries: tuple[Entry, ...]
    stat_nodes: tuple[int, ...]
    """Scheme ``i + 1`` measures node ``stat_nodes[i]``."""

    def value(self, rel: str) -> str:
        for path, value in self.entries:
            if path == rel:
                return value
        raise KeyError(rel)

    def with_values(self, values: Mapping[str, str]) -> Layout:
        """This layout after an online write of ``values`` (paths it already has)."""
        return replace(self, entries=tuple((p, values.get(p, v)) for p, v in self.entries))


def _pattern(s: int, p: model.AccessPattern) -> list[Entry]:
    return [
        (paths.access_pattern(s, "sz", "min"), str(p.sz_min)),
        (paths.access_pattern(s, "sz", "max"), str(p.sz_max)),
        (paths.access_pattern(s, "nr_accesses", "min"), str(p.nr_accesses_min)),
        (paths.access_pattern(s, "nr_accesses", "max"), str(p.nr_accesses_max)),
        (paths.access_pattern(s, "age", "min"), str(p.age_min)),
        (paths.access_pattern(s, "age", "max"), str(p.age_max)),
    ]


def _goals(s: int, goals: Sequence[model.QuotaGoal], f: Features) -> list[Entry]:
    out: list[Entry] = [(paths.nr_goals(s), str(len(goals)))]
    for i, goal in enumerate(goals):
        out += [
            (paths.goal(s, i, "target_metric"), goal.metric.value),
            (paths.goal(s, i, "target_value"), str(goal.target_value)),
            # A neutral start (score 10000): the tuner neither grows nor shrinks
            # the quota until damond feeds its first measurement.
            (paths.goal(s, i, "current_value"), str(goal.current_value or goal.target_value)),
        ]
        if f.goal_nid:
            out.append((paths.goal(s, i, "nid"), str(goal.nid)))
        if f.goal_path and goal.metric.takes_path:
            out.append((paths.goal(s, i, "path"), goal.path))
    return out


def _scheme(
    s: int,
    scheme: model.Scheme,
    keep: Sequence[int],
    topo: Topology,
    f: Features,
) -> list[Entry]:
    quota = scheme.quota
    out: list[Entry] = [(paths.scheme_file(s, "action"), scheme.action.value)]
    if f.target_nid and not scheme.action.moves_lru:  # an lru action has no destination
        out.append((paths.scheme_file(s, "target_nid"), str(scheme.target_nid)))
    out.append((paths.scheme_file(s, "apply_interval_us"), str(scheme.apply_interval_us)))
    out += _pattern(s, scheme.access_pattern)
    out += [
        (paths.quota(s, "ms"), str(quota.ms)),
        (paths.quota(s, "bytes"), str(quota.bytes)),
        (paths.quota(s, "reset_interval_ms"), str(quota.reset_interval_ms)),
        (paths.weight(s, "sz_permil"), str(quota.weights.sz_permil)),
        (paths.weight(s, "nr_accesses_permil"), str(quota.weights.nr_accesses_permil)),
        (paths.weight(s, "age_permil"), str(quota.weights.age_permil)),
    ]
    if f.goal_tuner:
        out.append((paths.quota(s, "goal_tuner"), quota.goal_tuner.value))
    if f.quota_goals:
        out += _goals(s, quota.goals, f)
    out += [(paths.watermarks_metric(s), "none")]
    others = [r for nid, rs in sorted(topo.ranges.items()) if nid not in keep for r in rs]
    out += filters.entries(s, scheme.filters, others, f)
    return out


def layout(ctx: model.Context, topo: Topology, features: Features, cfg: SysfsConfig) -> Layout:
    """Every file of ``ctx``'s kdamond, parents' ``nr_*`` before their children."""
    if not ctx.schemes:
        raise ValueError(f"context {ctx.name} has no scheme")
    working = ctx.schemes[WORKING_SCHEME]
    regions = ctx.regions or topo.all_ranges()
    out: list[Entry] = []
    if features.refresh_ms:
        out.append((paths.REFRESH_MS, str(cfg.refresh_ms)))
    out += [(paths.NR_CONTEXTS, "1"), (paths.OPERATIONS, ctx.operations.value)]
    if features.addr_unit:
        out.append((paths.ADDR_UNIT, "1"))
    iv = ctx.intervals
    out += [
        (paths.interval("sample_us"), str(iv.sample_us)),
        (paths.interval("aggr_us"), str(iv.aggr_us)),
        (paths.interval("update_us"), str(iv.update_us)),
        (paths.nr_regions_bound("min"), str(cfg.nr_regions_min)),
        (paths.nr_regions_bound("max"), str(cfg.nr_regions_max)),
        (paths.NR_TARGETS, "1"),
        (paths.NR_REGIONS, str(len(regions))),
    ]
    for i, r in enumerate(regions):
        out += [(paths.region(i, "start"), str(r.start)), (paths.region(i, "end"), str(r.end))]
    stat_nodes = topo.nodes
    out.append((paths.NR_SCHEMES, str(1 + len(stat_nodes))))
    out += _scheme(WORKING_SCHEME, working, ctx.nodes, topo, features)
    stat = model.Scheme(
        action=model.Action.STAT,
        access_pattern=working.access_pattern,
        quota=model.Quota(bytes=0, ms=0, reset_interval_ms=0),
        apply_interval_us=cfg.stat_apply_interval_us,
    )
    for i, nid in enumerate(stat_nodes):
        out += _scheme(i + 1, stat, (nid,), topo, features)
    return Layout(entries=tuple(out), stat_nodes=stat_nodes)


@dataclass(frozen=True, slots=True)
class Change:
    path: str
    old: str
    new: str


def apply(
    s: Session, kdamond: Path, entries: Sequence[Entry], skip_suffixes: tuple[str, ...] = ()
) -> list[Change]:
    """Write every entry whose file reads differently; return what was changed.

    A changed ``nr_*`` recreates its children with kernel defaults, which the
    following entries then overwrite, so the result is whole either way.
    """
    changes: list[Change] = []
    for rel, value in entries:
        if skip_suffixes and rel.endswith(skip_suffixes):
            continue
        path = kdamond / rel
        old = s.read(path)
        if old != value:
            s.write(path, value)
            changes.append(Change(rel, old, value))
    return changes


def mismatches(
    s: Session, kdamond: Path, entries: Sequence[Entry], skip_suffixes: tuple[str, ...] = ()
) -> list[Change]:
    """Entries whose file does not read back as written (``old`` is what was expected)."""
    out: list[Change] = []
    for rel, value in entries:
        if skip_suffixes and rel.endswith(skip_suffixes):
            continue
        actual = s.read(kdamond / rel)
        if actual != value:
            out.append(Change(rel, value, actual))
    return out


def describe(changes: Sequence[Change]) -> str:
    return "; ".join(f"{c.path}: {c.old!r} -> {c.new!r}" for c in changes)
