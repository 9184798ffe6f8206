"""NUMA node topology from ``/sys/devices/system/{node,memory}``.

A node's physical address ranges come from its online memory blocks (block M
covers ``[M * bs, (M + 1) * bs)``, ``block_size_bytes`` is hex without ``0x``),
merged and sorted, so holes between blocks stay holes. Capacity is the node's
``MemTotal`` (managed pages), not its spanned range.

Memory tiers come from ``/sys/devices/virtual/memory_tiering/memory_tierN/nodelist``:
the kernel numbers a tier by its abstract distance (DRAM is usually
``memory_tier4``, CXL memory a larger number), so damond ranks them, 0 the
fastest. A kernel without memory tiering leaves the tiers unknown.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from damond.backend.sysfs.io import Session
from damond.model.damon import AddressRange
from damond.model.errors import BackendError

_NODE_RE = re.compile(r"^node(\d+)$")
_BLOCK_RE = re.compile(r"^memory(\d+)$")
_MEMTOTAL_RE = re.compile(r"^Node\s+\d+\s+MemTotal:\s+(\d+)\s+kB", re.MULTILINE)
_TIER_RE = re.compile(r"^memory_tier(\d+)$")


@dataclass(frozen=True, slots=True)
class Topology:
    ranges: Mapping[int, tuple[AddressRange, ...]]
    """Online physical memory of each node that has any, merged and sorted."""
    capacity_bytes: Mapping[int, int]
    tier_by_node: Mapping[int, int] = field(default_factory=dict, compare=False)
    """Each node's memory tier, ranked from 0 (the fastest); empty if the kernel has none.
    Not compared: a tier does not change what damond writes to the kernel."""

    @property
    def nodes(self) -> tuple[int, ...]:
        return tuple(sorted(self.ranges))

    def all_ranges(self) -> tuple[AddressRange, ...]:
        """Every node's ranges together, sorted and merged (a paddr target's regions)."""
        return merge([r for rs in self.ranges.values() for r in rs])


def merge(ranges: list[AddressRange]) -> tuple[AddressRange, ...]:
    out: list[AddressRange] = []
    for r in sorted(ranges, key=lambda r: r.start):
        if out and r.start <= out[-1].end:
            out[-1] = AddressRange(out[-1].start, max(out[-1].end, r.end))
        else:
            out.append(r)
    return tuple(out)


def read_topology(s: Session, devices_root: Path) -> Topology:
    node_dir = devices_root / "node"
    memory_dir = devices_root / "memory"
    try:
        block_size = int(s.read(memory_dir / "block_size_bytes").strip(), 16)
    except ValueError as exc:
        raise BackendError(f"{memory_dir / 'block_size_bytes'}: not a hex number") from exc
    ranges: dict[int, tuple[AddressRange, ...]] = {}
    capacity: dict[int, int] = {}
    for name in s.listdir(node_dir):
        m = _NODE_RE.match(name)
        if not m:
            continue
        nid = int(m.group(1))
        blocks: list[AddressRange] = []
        for entry in s.listdir(node_dir / name):
            b = _BLOCK_RE.match(entry)
            if not b:
                continue  # memory_failure and friends
            state_file = memory_dir / entry / "state"
            if s.exists(state_file) and s.read(state_file).strip() != "online":
                continue
            index = int(b.group(1))
            blocks.append(AddressRange(index * block_size, (index + 1) * block_size))
        meminfo = s.read(node_dir / name / "meminfo")
        total = _MEMTOTAL_RE.search(meminfo)
        if blocks:
            ranges[nid] = merge(blocks)
            capacity[nid] = int(total.group(1)) * 1024 if total else 0
    if not ranges:
        raise BackendError(f"no node with online memory under {node_dir}")
    tiers = read_tiers(s, devices_root.parent / "virtual" / "memory_tiering")
    return Topology(ranges=ranges, capacity_bytes=capacity, tier_by_node=tiers)


def parse_nodelist(text: str) -> list[int]:
    """A kernel node list (``0``, ``0-1,4``; empty for none) as node ids."""
    nodes: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        nodes.extend(range(int(first), int(last or first) + 1))
    return nodes


def read_tiers(s: Session, tiering_dir: Path) -> dict[int, int]:
    """Each node's tier, ranked by the kernel's tier numbers (0 the fastest)."""
    if not s.exists(tiering_dir):
        return {}
    kernel_tiers: dict[int, list[int]] = {}
    for name in s.listdir(tiering_dir):
        m = _TIER_RE.match(name)
        if not m:
            continue
        path = tiering_dir / name / "nodelist"
        try:
            kernel_tiers[int(m.group(1))] = parse_nodelist(s.read(path))
        except ValueError as exc:
            raise BackendError(f"{path}: not a node list") from exc
    ranked = sorted(tier for tier, nodes in kernel_tiers.items() if nodes)
    return {nid: rank for rank, tier in enumerate(ranked) for nid in kernel_tiers[tier]}
