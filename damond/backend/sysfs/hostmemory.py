"""The host's memory readings that the node, cgroup, LRU and pressure goal metrics are
computed from, read the way the kernel computes those metrics (``mm/damon/core.c``):

- ``node_mem_*``: ``MemTotal`` and ``MemFree`` of ``/sys/devices/system/node/nodeN/meminfo``
  (the node's managed and free pages);
- ``node_memcg_*``: the cgroup's LRU pages on the node, the ``active_anon``,
  ``inactive_anon``, ``active_file`` and ``inactive_file`` rows of its
  ``memory.numa_stat`` (hierarchical, as the kernel counts them); the root cgroup has no
  such file, and its LRU is the node's, from the node's ``meminfo``;
- ``active_mem_bp`` / ``inactive_mem_bp``: ``nr_(in)active_{anon,file}`` of ``/proc/vmstat``;
- ``some_mem_psi_us``: the ``some`` total of ``/proc/pressure/memory``.

Every file goes through the backend's worker session. A reading that fails is left out
and its reason, naming the file, is kept in ``problems``: the goal that needs it is held,
its context does not fail.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from damond.backend.sysfs.io import Session
from damond.model import damon as model
from damond.model.errors import BackendError
from damond.model.measurement import MemoryReadings

_LRU_ROWS = ("active_anon", "inactive_anon", "active_file", "inactive_file")
_LRU_VMSTAT = {"nr_active_anon", "nr_active_file", "nr_inactive_anon", "nr_inactive_file"}
_NODE_LRU_FIELDS = ("Active(anon)", "Inactive(anon)", "Active(file)", "Inactive(file)")
_MEMINFO_LINE = re.compile(r"^Node\s+(\d+)\s+([^\s:]+):\s+(\d+)(\s+kB)?$")
_NODE_COUNT = re.compile(r"^N(\d+)=(\d+)$")


@dataclass(frozen=True, slots=True)
class MemoryNeeds:
    """What a context's goal needs read each snapshot."""

    nodes: frozenset[int] = frozenset()
    """Nodes whose ``meminfo`` is read (total, free, and the LRU for the root cgroup)."""
    cgroups: frozenset[str] = frozenset()
    lru: bool = False
    psi: bool = False

    def __bool__(self) -> bool:
        return bool(self.nodes or self.cgroups or self.lru or self.psi)


@dataclass(frozen=True, slots=True)
class HostRoots:
    """Where the files are; a test points them at a fake tree."""

    devices_root: Path = Path("/sys/devices/system")
    proc_root: Path = Path("/proc")
    cgroup_root: Path | None = None
    """The cgroup v2 mount; None: found in ``<proc_root>/self/mounts``."""
    page_size: int = field(default_factory=lambda: os.sysconf("SC_PAGE_SIZE"))


def needs_of(goals: Iterable[model.QuotaGoal]) -> MemoryNeeds:
    """The readings ``goals`` need (none for the node-share and ``user_input`` goals)."""
    nodes: set[int] = set()
    cgroups: set[str] = set()
    lru = psi = False
    for goal in goals:
        metric = goal.metric
        if metric in (model.GoalMetric.NODE_MEM_USED_BP, model.GoalMetric.NODE_MEM_FREE_BP):
            nodes.add(goal.nid)
        elif metric.takes_path:
            nodes.add(goal.nid)
            cgroups.add(goal.path or "/")
        elif metric in (model.GoalMetric.ACTIVE_MEM_BP, model.GoalMetric.INACTIVE_MEM_BP):
            lru = True
        elif metric is model.GoalMetric.SOME_MEM_PSI_US:
            psi = True
    return MemoryNeeds(frozenset(nodes), frozenset(cgroups), lru, psi)


def context_needs(ctx: model.Context) -> MemoryNeeds:
    """What ``ctx``'s goal needs: its memory goal, and the goals its schemes hand the
    kernel (whose values damond reports too)."""
    goals = [g for s in ctx.schemes for g in s.quota.goals]
    if ctx.memory_goal is not None:
        goals.append(ctx.memory_goal)
    return needs_of(goals)


def read_memory(s: Session, roots: HostRoots, needs: MemoryNeeds) -> MemoryReadings:
    """The readings ``needs`` asks for; what fails is named in ``problems``."""
    problems: list[str] = []
    total: dict[int, int] = {}
    free: dict[int, int] = {}
    node_lru: dict[int, int] = {}
    for nid in sorted(needs.nodes):
        try:
            info = read_node_meminfo(s, roots.devices_root, nid)
            total[nid] = info["MemTotal"]
            free[nid] = info["MemFree"]
            if "/" in needs.cgroups:
                node_lru[nid] = node_lru_bytes(info, roots.devices_root, nid)
        except BackendError as exc:
            problems.append(str(exc))
    memcg: dict[str, dict[int, int]] = {}
    if needs.cgroups - {"/"}:
        mount = _cgroup_mount(s, roots, problems)
        for path in sorted(needs.cgroups - {"/"}):
            if mount is None:
                continue
            try:
                memcg[path] = read_memcg_lru(s, mount, path)
            except BackendError as exc:
                problems.append(str(exc))
    if "/" in needs.cgroups and node_lru:
        memcg["/"] = node_lru
    active = inactive = 0
    if needs.lru:
        try:
            active, inactive = read_lru_bytes(s, roots.proc_root / "vmstat", roots.page_size)
        except BackendError as exc:
            problems.append(str(exc))
    psi = 0
    if needs.psi:
        try:
            psi = read_psi_some_total_us(s, roots.proc_root / "pressure" / "memory")
        except BackendError as exc:
            problems.append(str(exc))
    return MemoryReadings(
        node_total_bytes=total,
        node_free_bytes=free,
        memcg_node_bytes=memcg,
        active_bytes=active,
        inactive_bytes=inactive,
        psi_some_total_us=psi,
        problems=tuple(problems),
    )


def read_node_meminfo(s: Session, devices_root: Path, nid: int) -> dict[str, int]:
    """A node's ``meminfo`` fields in bytes (page counts such as ``HugePages_Total`` as
    read); ``MemTotal`` and ``MemFree`` must be there."""
    path = devices_root / "node" / f"node{nid}" / "meminfo"
    fields: dict[str, int] = {}
    for line in s.read(path).splitlines():
        if not line.strip():
            continue
        m = _MEMINFO_LINE.match(line.strip())
        if m is None:
            raise BackendError(f"read {path}: unparsable line {line!r}")
        if int(m[1]) != nid:
            raise BackendError(f"read {path}: a line of node {m[1]}, not {nid}: {line!r}")
        fields[m[2]] = int(m[3]) * (1024 if m[4] else 1)
    missing = [f for f in ("MemTotal", "MemFree") if f not in fields]
    if missing:
        raise BackendError(f"read {path}: no {' or '.join(missing)} line")
    if fields["MemTotal"] <= 0:
        raise BackendError(f"read {path}: MemTotal is 0 (a node without managed memory)")
    return fields


def node_lru_bytes(info: dict[str, int], devices_root: Path, nid: int) -> int:
    """The node's LRU bytes (the root cgroup's on that node) from its ``meminfo``."""
    missing = [f for f in _NODE_LRU_FIELDS if f not in info]
    if missing:
        path = devices_root / "node" / f"node{nid}" / "meminfo"
        raise BackendError(f"read {path}: no {', '.join(missing)} line")
    return sum(info[f] for f in _NODE_LRU_FIELDS)


def read_memcg_lru(s: Session, mount: Path, path: str) -> dict[int, int]:
    """The cgroup's LRU bytes per node, from its ``memory.numa_stat``."""
    cgroup_dir = mount / path.lstrip("/")
    stat = cgroup_dir / "memory.numa_stat"
    if not s.exists(stat):
        controllers = mount / "cgroup.controllers"
        if s.exists(controllers) and "memory" not in s.read(controllers).split():
            raise BackendError(
                f"cgroup {path}: the cgroup2 file system at {mount} has no memory controller "
                f"({controllers}); is it bound to cgroup v1?"
            )
        if not s.exists(cgroup_dir):
            raise BackendError(f"cgroup {path}: {cgroup_dir} does not exist (gone, or a typo)")
        raise BackendError(
            f"cgroup {path}: no {stat}: the memory controller is not enabled for it "
            "(its parent's cgroup.subtree_control lacks +memory)"
        )
    rows: dict[str, dict[int, int]] = {}
    for line in s.read(stat).splitlines():
        name, *counts = line.split()
        if name not in _LRU_ROWS:
            continue
        per_node: dict[int, int] = {}
        for item in counts:
            m = _NODE_COUNT.match(item)
            if m is None:
                raise BackendError(f"read {stat}: unparsable {name} entry {item!r}")
            per_node[int(m[1])] = int(m[2])
        rows[name] = per_node
    missing = [r for r in _LRU_ROWS if r not in rows]
    if missing:
        raise BackendError(f"read {stat}: no {', '.join(missing)} row")
    nodes = sorted({n for per_node in rows.values() for n in per_node})
    return {n: sum(rows[r].get(n, 0) for r in _LRU_ROWS) for n in nodes}


def read_lru_bytes(s: Session, vmstat: Path, page_size: int) -> tuple[int, int]:
    """``(active, inactive)`` LRU bytes of the whole system."""
    counts: dict[str, int] = {}
    for line in s.read(vmstat).splitlines():
        name, _, value = line.partition(" ")
        if name in _LRU_VMSTAT:
            try:
                counts[name] = int(value)
            except ValueError:
                raise BackendError(f"read {vmstat}: unparsable line {line!r}") from None
    missing = sorted(_LRU_VMSTAT - counts.keys())
    if missing:
        raise BackendError(f"read {vmstat}: no {', '.join(missing)} line")
    active = counts["nr_active_anon"] + counts["nr_active_file"]
    inactive = counts["nr_inactive_anon"] + counts["nr_inactive_file"]
    return active * page_size, inactive * page_size


def read_psi_some_total_us(s: Session, pressure: Path) -> int:
    """The cumulative ``some`` memory stall, microseconds (needs ``CONFIG_PSI`` and no
    ``psi=0`` on the kernel command line)."""
    for line in s.read(pressure).splitlines():
        kind, *items = line.split()
        if kind != "some":
            continue
        for item in items:
            key, _, value = item.partition("=")
            if key == "total":
                try:
                    return int(value)
                except ValueError:
                    break
        raise BackendError(f"read {pressure}: unparsable line {line!r}")
    raise BackendError(f"read {pressure}: no 'some' line")


def find_cgroup2_mount(s: Session, mounts: Path) -> Path:
    """The first ``cgroup2`` mount point listed in ``mounts``."""
    for line in s.read(mounts).splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "cgroup2":
            return Path(_unescape(parts[1]))
    raise BackendError(f"read {mounts}: no cgroup2 file system is mounted")


def _cgroup_mount(s: Session, roots: HostRoots, problems: list[str]) -> Path | None:
    if roots.cgroup_root is not None:
        return roots.cgroup_root
    try:
        return find_cgroup2_mount(s, roots.proc_root / "self" / "mounts")
    except BackendError as exc:
        problems.append(str(exc))
        return None


def _unescape(field: str) -> str:
    """A mounts field with the kernel's octal escapes (``\\040`` for a space) undone."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)
