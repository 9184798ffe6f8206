"""The files of one damond kdamond: what to write, writing only what differs, read-back.

Layout of a context (one kdamond, one paddr context):

- one target whose regions are every node's online memory;
- scheme 0, the working scheme, restricted to the context's source nodes by
  core ``addr`` filters that reject every other node's ranges;
- schemes 1..N, quota-less ``stat`` schemes with the working scheme's access
  pattern, one per node and restricted to it the same way: they measure the
  eligible bytes of each node (``tried_regions`` of a quota-limited scheme
  would only show what fitted in its quota).

Reject-only filters (``matching`` Y, ``allow`` N) mean the same before and
after the kernel's 6.14 ``allow`` semantics. Every value is plain decimal: the
kernel parses a leading 0 as octal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from damond.backend.sysfs.features import Features
from damond.backend.sysfs.io import Session
from damond.backend.sysfs.topology import Topology
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


def scheme_dir(index: int) -> str:
    return f"contexts/0/schemes/{index}"


def _pattern(prefix: str, p: model.AccessPattern) -> list[Entry]:
    return [
        (f"{prefix}/access_pattern/sz/min", str(p.sz_min)),
        (f"{prefix}/access_pattern/sz/max", str(p.sz_max)),
        (f"{prefix}/access_pattern/nr_accesses/min", str(p.nr_accesses_min)),
        (f"{prefix}/access_pattern/nr_accesses/max", str(p.nr_accesses_max)),
        (f"{prefix}/access_pattern/age/min", str(p.age_min)),
        (f"{prefix}/access_pattern/age/max", str(p.age_max)),
    ]


def _reject_filters(prefix: str, ranges: Sequence[model.AddressRange], f: Features) -> list[Entry]:
    where = f"{prefix}/{'core_filters' if f.core_filters else 'filters'}"
    out: list[Entry] = [(f"{where}/nr_filters", str(len(ranges)))]
    for i, r in enumerate(ranges):
        out += [(f"{where}/{i}/type", "addr"), (f"{where}/{i}/matching", "Y")]
        if f.filter_allow:
            out.append((f"{where}/{i}/allow", "N"))
        out += [(f"{where}/{i}/addr_start", str(r.start)), (f"{where}/{i}/addr_end", str(r.end))]
    return out


def _scheme(
    prefix: str,
    scheme: model.Scheme,
    keep: Sequence[int],
    topo: Topology,
    f: Features,
) -> list[Entry]:
    quota = scheme.quota
    out: list[Entry] = [(f"{prefix}/action", scheme.action.value)]
    if f.target_nid:
        out.append((f"{prefix}/target_nid", str(scheme.target_nid)))
    out.append((f"{prefix}/apply_interval_us", str(scheme.apply_interval_us)))
    out += _pattern(prefix, scheme.access_pattern)
    out += [
        (f"{prefix}/quotas/ms", str(quota.ms)),
        (f"{prefix}/quotas/bytes", str(quota.bytes)),
        (f"{prefix}/quotas/reset_interval_ms", str(quota.reset_interval_ms)),
        (f"{prefix}/quotas/weights/sz_permil", str(quota.weights.sz_permil)),
        (f"{prefix}/quotas/weights/nr_accesses_permil", str(quota.weights.nr_accesses_permil)),
        (f"{prefix}/quotas/weights/age_permil", str(quota.weights.age_permil)),
    ]
    if f.goal_tuner:
        out.append((f"{prefix}/quotas/goal_tuner", quota.goal_tuner.value))
    if f.quota_goals:
        out.append((f"{prefix}/quotas/goals/nr_goals", str(len(quota.goals))))
        for i, goal in enumerate(quota.goals):
            g = f"{prefix}/quotas/goals/{i}"
            out += [
                (f"{g}/target_metric", goal.metric.value),
                (f"{g}/target_value", str(goal.target_value)),
            ]
            # A neutral start (score 10000): the tuner neither grows nor shrinks
            # the quota until damond feeds its first measurement.
            out.append((f"{g}/current_value", str(goal.current_value or goal.target_value)))
            if f.goal_nid:
                out.append((f"{g}/nid", str(goal.nid)))
    out += [(f"{prefix}/watermarks/metric", "none")]
    others = [r for nid, rs in sorted(topo.ranges.items()) if nid not in keep for r in rs]
    out += _reject_filters(prefix, others, f)
    return out


def layout(
    ctx: model.Context,
    topo: Topology,
    features: Features,
    *,
    refresh_ms: int,
    nr_regions: tuple[int, int],
    stat_apply_interval_us: int,
) -> Layout:
    """Every file of ``ctx``'s kdamond, parents' ``nr_*`` before their children."""
    if not ctx.schemes:
        raise ValueError(f"context {ctx.name} has no scheme")
    working = ctx.schemes[WORKING_SCHEME]
    regions = ctx.regions or topo.all_ranges()
    c = "contexts/0"
    out: list[Entry] = []
    if features.refresh_ms:
        out.append(("refresh_ms", str(refresh_ms)))
    out += [("contexts/nr_contexts", "1"), (f"{c}/operations", ctx.operations.value)]
    if features.addr_unit:
        out.append((f"{c}/addr_unit", "1"))
    iv = ctx.intervals
    out += [
        (f"{c}/monitoring_attrs/intervals/sample_us", str(iv.sample_us)),
        (f"{c}/monitoring_attrs/intervals/aggr_us", str(iv.aggr_us)),
        (f"{c}/monitoring_attrs/intervals/update_us", str(iv.update_us)),
        (f"{c}/monitoring_attrs/nr_regions/min", str(nr_regions[0])),
        (f"{c}/monitoring_attrs/nr_regions/max", str(nr_regions[1])),
        (f"{c}/targets/nr_targets", "1"),
        (f"{c}/targets/0/regions/nr_regions", str(len(regions))),
    ]
    for i, r in enumerate(regions):
        out += [
            (f"{c}/targets/0/regions/{i}/start", str(r.start)),
            (f"{c}/targets/0/regions/{i}/end", str(r.end)),
        ]
    stat_nodes = topo.nodes
    out.append((f"{c}/schemes/nr_schemes", str(1 + len(stat_nodes))))
    out += _scheme(scheme_dir(WORKING_SCHEME), working, ctx.nodes, topo, features)
    for i, nid in enumerate(stat_nodes):
        stat = model.Scheme(
            action=model.Action.STAT,
            access_pattern=working.access_pattern,
            quota=model.Quota(bytes=0, ms=0, reset_interval_ms=0),
            apply_interval_us=stat_apply_interval_us,
        )
        out += _scheme(scheme_dir(i + 1), stat, (nid,), topo, features)
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
