"""A fake DAMON sysfs tree in a temp dir, with the kernel's write semantics.

The tree is plain files (so it can be dumped and compared); :class:`FakeKernel`
is the :class:`~damond.backend.sysfs.io.SysfsIO` the backend writes through, and it
behaves like the kernel where damond depends on it: ``nr_*`` writes destroy and
recreate children, integers are parsed with base 0 (a leading 0 is octal),
unknown keywords and bad booleans are EINVAL, read-only files refuse writes,
``nr_kdamonds`` is EBUSY while a kdamond runs, ``on`` is EBUSY while a DAMON
module holds DAMON, and a commit of an invalid context stops the kdamond.
Each kernel version lays out only the files it has.
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from damond.backend.sysfs.io import SysfsIO

GiB = 1 << 30
BLOCK = 128 << 20
PAGE_SIZE = 4096
U64_MAX = 2**64 - 1


@dataclass(frozen=True)
class KernelSpec:
    release: str
    version: tuple[int, int]

    def has(self, major: int, minor: int) -> bool:
        return self.version >= (major, minor)

    @property
    def metrics(self) -> set[str]:
        out = {"user_input", "some_mem_psi_us"}
        if self.has(6, 16):
            out |= {"node_mem_used_bp", "node_mem_free_bp"}
        if self.has(6, 19):
            out |= {"node_memcg_used_bp", "node_memcg_free_bp"}
        if self.has(7, 0):
            out |= {"active_mem_bp", "inactive_mem_bp"}
        if self.has(7, 2):
            out.add("node_eligible_mem_bp")
        return out

    @property
    def filter_types(self) -> set[str]:
        out = {"anon", "memcg", "addr", "target", "young"}
        if self.has(6, 15):
            out |= {"hugepage_size", "unmapped", "active"}
        return out

    @property
    def actions(self) -> set[str]:
        out = {"willneed", "cold", "pageout", "hugepage", "nohugepage", "stat"}
        out |= {"lru_prio", "lru_deprio", "migrate_hot", "migrate_cold"}
        if self.has(7, 2):
            out.add("collapse")
        return out


KERNELS = {
    "6.12": KernelSpec("6.12.117+deb13-amd64", (6, 12)),
    "6.14": KernelSpec("6.14.11", (6, 14)),
    "6.18": KernelSpec("6.18.44", (6, 18)),
    "7.2": KernelSpec("7.2.13+deb14-amd64", (7, 2)),
}

BOOLS = {"matching", "allow", "pause", "obsolete_target", "complement"}
TEXT = {"memcg_path", "path"}
SIGNED = {"nid", "target_nid", "pid_target", "damon_target_idx"}
READ_ONLY = {"pid", "avail_operations", "effective_bytes", "total_bytes"}
STATE_COMMANDS = {
    "on",
    "off",
    "commit",
    "commit_schemes_quota_goals",
    "update_schemes_stats",
    "update_schemes_tried_bytes",
    "update_schemes_tried_regions",
    "clear_schemes_tried_regions",
    "update_schemes_effective_quotas",
    "update_tuned_intervals",
}
CORE_FILTER_TYPES = {"addr", "target"}
OPS_FILTER_TYPES = {"anon", "memcg", "young", "hugepage_size", "unmapped", "active"}


def _err(code: int, path: Path) -> OSError:
    return OSError(code, os.strerror(code), str(path))


def kstrtoul(text: str, path: Path, signed: bool = False) -> int:
    """The kernel's base-0 integer parsing: ``0x`` hex, leading ``0`` octal."""
    t = text[:-1] if text.endswith("\n") else text
    neg = signed and t.startswith("-")
    body = t[1:] if neg else t
    try:
        if body.lower().startswith("0x"):
            value = int(body[2:], 16)
        elif body.startswith("0") and len(body) > 1:
            value = int(body[1:], 8)
        else:
            if not body.isdigit():
                raise ValueError(body)
            value = int(body, 10)
    except ValueError:
        raise _err(errno.EINVAL, path) from None
    value = -value if neg else value
    if not signed and value > U64_MAX:
        raise _err(errno.ERANGE, path)
    return value


def _put(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n")


@dataclass
class FakeMachine:
    """The fake host: its kernel, its NUMA memory and what DAMON would find hot."""

    root: Path
    kernel: KernelSpec
    node_blocks: dict[int, list[int]] = field(
        default_factory=lambda: {0: list(range(0, 8)), 1: list(range(8, 16))}
    )
    offline_blocks: set[int] = field(default_factory=set)
    hot_bytes: dict[int, int] = field(default_factory=lambda: {0: 256 << 20, 1: 512 << 20})
    boot_id: str = "0b5e9d6c-7a5e-4a53-9b0e-1d3f5a7c9e11"

    @property
    def admin(self) -> Path:
        return self.root / "sys/kernel/mm/damon/admin"

    @property
    def devices(self) -> Path:
        return self.root / "sys/devices/system"

    @property
    def modules(self) -> Path:
        return self.root / "sys/module"

    @property
    def proc(self) -> Path:
        return self.root / "proc"

    def sysfs_toml(self) -> str:
        """The ``[sysfs]`` table of a config that points damond at this fake host."""
        return (
            "[sysfs]\n"
            f'admin_root = "{self.admin}"\n'
            f'devices_root = "{self.devices}"\n'
            f'module_root = "{self.modules}"\n'
            f'proc_root = "{self.proc}"\n'
        )

    def node_start(self, nid: int) -> int | None:
        blocks = [b for b in self.node_blocks[nid] if b not in self.offline_blocks]
        return min(blocks) * BLOCK if blocks else None

    def lay_out(self) -> None:
        _put(self.admin / "kdamonds/nr_kdamonds", "0")
        _put(self.proc / "sys/kernel/osrelease", self.kernel.release)
        _put(self.proc / "sys/kernel/random/boot_id", self.boot_id)
        if self.kernel.has(6, 17):
            _put(self.modules / "damon_stat/parameters/enabled", "N")
        _put(self.modules / "damon_reclaim/parameters/enabled", "N")
        self.lay_out_nodes()

    def lay_out_nodes(self) -> None:
        shutil.rmtree(self.devices, ignore_errors=True)
        _put(self.devices / "memory/block_size_bytes", f"{BLOCK:x}")
        _put(self.devices / "node/online", "0-1")
        for nid, blocks in self.node_blocks.items():
            node = self.devices / f"node/node{nid}"
            _put(node / "memory_failure", "")
            total_kb = len(blocks) * BLOCK // 1024 - 4096
            _put(
                node / "meminfo",
                f"Node {nid} MemTotal:       {total_kb} kB\nNode {nid} MemFree: 1 kB",
            )
            for b in blocks:
                (node / f"memory{b}").mkdir(parents=True)
                state = "offline" if b in self.offline_blocks else "online"
                _put(self.devices / f"memory/memory{b}/state", state)

    def set_module(self, module: str, enabled: bool) -> None:
        _put(self.modules / module / "parameters/enabled", "Y" if enabled else "N")


class FakeKernel(SysfsIO):
    """File access with the kernel's semantics for everything under the admin root."""

    def __init__(self, machine: FakeMachine) -> None:
        self.m = machine
        self.k = machine.kernel
        self.next_pid = 1000
        self.ebusy_left = 0
        self.writes: list[tuple[str, str]] = []

    # -- tree construction ---------------------------------------------------------

    def _kdamond(self, d: Path) -> None:
        _put(d / "state", "off")
        _put(d / "pid", "-1")
        if self.k.has(6, 17):
            _put(d / "refresh_ms", "0")
        _put(d / "contexts/nr_contexts", "0")

    def _context(self, d: Path) -> None:
        _put(d / "avail_operations", "vaddr\nfvaddr\npaddr")
        _put(d / "operations", "vaddr")
        if self.k.has(6, 18):
            _put(d / "addr_unit", "1")
        if self.k.has(7, 2):
            _put(d / "pause", "N")
            _put(d / "monitoring_attrs/probes/nr_probes", "0")
        iv = d / "monitoring_attrs/intervals"
        for name, value in (("sample_us", 5000), ("aggr_us", 100000), ("update_us", 60000000)):
            _put(iv / name, str(value))
        if self.k.has(6, 15):
            for name in ("access_bp", "aggrs", "min_sample_us", "max_sample_us"):
                _put(iv / "intervals_goal" / name, "0")
        _put(d / "monitoring_attrs/nr_regions/min", "10")
        _put(d / "monitoring_attrs/nr_regions/max", "1000")
        _put(d / "targets/nr_targets", "0")
        _put(d / "schemes/nr_schemes", "0")

    def _target(self, d: Path) -> None:
        _put(d / "pid_target", "0")
        if self.k.has(6, 19):
            _put(d / "obsolete_target", "N")
        _put(d / "regions/nr_regions", "0")

    def _region(self, d: Path) -> None:
        _put(d / "start", "0")
        _put(d / "end", "0")

    def _scheme(self, d: Path) -> None:
        _put(d / "action", "stat")
        _put(d / "apply_interval_us", "0")
        _put(d / "target_nid", "-1")
        for attr in ("sz", "nr_accesses", "age"):
            _put(d / "access_pattern" / attr / "min", "0")
            _put(d / "access_pattern" / attr / "max", "0")
        q = d / "quotas"
        for name in ("ms", "bytes", "reset_interval_ms", "effective_bytes"):
            _put(q / name, "0")
        for name in ("sz_permil", "nr_accesses_permil", "age_permil"):
            _put(q / "weights" / name, "0")
        if self.k.has(7, 1):
            _put(q / "goal_tuner", "consist")
        if self.k.has(7, 2):
            _put(q / "fail_charge_num", "0")
            _put(q / "fail_charge_denom", "0")
        _put(q / "goals/nr_goals", "0")
        _put(d / "watermarks/metric", "none")
        for name in ("interval_us", "high", "mid", "low"):
            _put(d / "watermarks" / name, "0")
        _put(d / "filters/nr_filters", "0")
        if self.k.has(6, 15):
            _put(d / "core_filters/nr_filters", "0")
            _put(d / "ops_filters/nr_filters", "0")
        if self.k.has(6, 17):
            _put(d / "dests/nr_dests", "0")
        stats = ["nr_tried", "sz_tried", "nr_applied", "sz_applied", "qt_exceeds"]
        if self.k.has(6, 14):
            stats.append("sz_ops_filter_passed")
        if self.k.has(7, 0):
            stats += ["nr_snapshots", "max_nr_snapshots"]
        for name in stats:
            _put(d / "stats" / name, "0")
        _put(d / "tried_regions/total_bytes", "0")

    def _goal(self, d: Path) -> None:
        _put(d / "target_metric", "user_input")
        _put(d / "target_value", "0")
        _put(d / "current_value", "0")
        if self.k.has(6, 16):
            _put(d / "nid", "0")
        if self.k.has(6, 19):
            _put(d / "path", "")

    def _filter(self, d: Path) -> None:
        _put(d / "type", "anon")
        _put(d / "matching", "N")
        if self.k.has(6, 14):
            _put(d / "allow", "N")
        _put(d / "memcg_path", "")
        for name in ("addr_start", "addr_end", "damon_target_idx"):
            _put(d / name, "0")
        if self.k.has(6, 15):
            _put(d / "min", "0")
            _put(d / "max", "0")

    def _dest(self, d: Path) -> None:
        _put(d / "id", "0")
        _put(d / "weight", "0")

    CHILDREN: ClassVar[dict[str, str]] = {
        "kdamonds": "_kdamond",
        "contexts": "_context",
        "targets": "_target",
        "regions": "_region",
        "schemes": "_scheme",
        "goals": "_goal",
        "filters": "_filter",
        "core_filters": "_filter",
        "ops_filters": "_filter",
        "dests": "_dest",
    }

    # -- helpers -------------------------------------------------------------------------

    def _kdamond_of(self, path: Path) -> Path | None:
        rel = path.relative_to(self.m.admin).parts
        if len(rel) >= 2 and rel[0] == "kdamonds" and rel[1].isdigit():
            return self.m.admin / "kdamonds" / rel[1]
        return None

    def _running(self, kd: Path) -> bool:
        return (kd / "state").read_text().strip() == "on"

    def _any_running(self) -> bool:
        kds = self.m.admin / "kdamonds"
        return any(self._running(kds / d) for d in os.listdir(kds) if d.isdigit())

    @staticmethod
    def _get(path: Path) -> str:
        return path.read_text().rstrip("\n")

    # -- SysfsIO -------------------------------------------------------------------------

    def read(self, path: Path) -> str:
        if self._under_admin(path) and path.name == "state" and self.ebusy_left > 0:
            self.ebusy_left -= 1
            raise _err(errno.EBUSY, path)
        if self._under_admin(path) and path.name == "state":
            kd = path.parent
            if self._running(kd) and self.k.has(6, 17) and int(self._get(kd / "refresh_ms")) > 0:
                self._refresh_stats(kd)
        return super().read(path)

    def _under_admin(self, path: Path) -> bool:
        return path.is_relative_to(self.m.admin)

    def write(self, path: Path, value: str) -> None:
        if not self._under_admin(path):
            super().write(path, value)
            return
        if not path.is_file():
            raise _err(errno.ENOENT, path)
        name = path.name
        if self.ebusy_left > 0 and (name == "state" or name.startswith("nr_")):
            self.ebusy_left -= 1
            raise _err(errno.EBUSY, path)
        text = value[:-1] if value.endswith("\n") else value
        if name in READ_ONLY or (path.parent.name == "stats" and name != "max_nr_snapshots"):
            raise _err(errno.EACCES, path)
        self.writes.append((str(path.relative_to(self.m.admin)), text))
        if name == "state":
            self._state(path.parent, text, path)
            return
        if name.startswith("nr_"):
            self._nr(path, kstrtoul(text, path, signed=True))
            return
        _put(path, self._parse(path, text))

    def _parse(self, path: Path, text: str) -> str:
        name = path.name
        parent = path.parent.name
        if name in BOOLS:
            if text in ("Y", "y", "1", "on"):
                return "Y"
            if text in ("N", "n", "0", "off"):
                return "N"
            raise _err(errno.EINVAL, path)
        if name in TEXT:
            return text
        keywords: set[str] | None = None
        if name == "action":
            keywords = self.k.actions
        elif name == "target_metric":
            keywords = self.k.metrics
        elif name == "goal_tuner":
            keywords = {"consist", "temporal"}
        elif name == "operations":
            keywords = {"vaddr", "fvaddr", "paddr"}
        elif name == "metric" and parent == "watermarks":
            keywords = {"none", "free_mem_rate"}
        elif name == "type":
            filters_dir = path.parent.parent.name
            if filters_dir == "core_filters":
                keywords = CORE_FILTER_TYPES
            elif filters_dir == "ops_filters":
                keywords = OPS_FILTER_TYPES
            else:
                keywords = CORE_FILTER_TYPES | OPS_FILTER_TYPES
            keywords = keywords & self.k.filter_types
        if keywords is not None:
            if text not in keywords:
                raise _err(errno.EINVAL, path)
            return text
        number = kstrtoul(text, path, signed=name in SIGNED)
        if name == "addr_unit" and number == 0:
            raise _err(errno.EINVAL, path)
        return str(number)

    def _nr(self, path: Path, n: int) -> None:
        if n < 0:
            raise _err(errno.EINVAL, path)
        kind = path.parent.name
        if kind == "kdamonds" and self._any_running():
            raise _err(errno.EBUSY, path)
        if kind == "contexts" and n > 1:
            raise _err(errno.EINVAL, path)
        for child in os.listdir(path.parent):
            if child.isdigit():
                shutil.rmtree(path.parent / child)
        make = self.CHILDREN.get(kind)
        if make is not None:
            for i in range(n):
                (path.parent / str(i)).mkdir()
                getattr(self, make)(path.parent / str(i))
        _put(path, str(n))

    # -- state commands ------------------------------------------------------------------

    def _state(self, kd: Path, command: str, path: Path) -> None:
        if command not in STATE_COMMANDS:
            raise _err(errno.EINVAL, path)
        running = self._running(kd)
        if command == "off":
            if running:
                _put(kd / "state", "off")
                _put(kd / "pid", "-1")
            return
        if command != "on" and int(self._get(kd / "contexts/nr_contexts")) != 1:
            raise _err(errno.EINVAL, path)
        if command == "on":
            if running or any(
                self._get(self.m.modules / m / "parameters/enabled") == "Y"
                for m in os.listdir(self.m.modules)
                if (self.m.modules / m / "parameters/enabled").exists()
            ):
                raise _err(errno.EBUSY, path)
            if int(self._get(kd / "contexts/nr_contexts")) != 1 or not self._valid(kd):
                raise _err(errno.EINVAL, path)
            for stat in (kd / "contexts/0/schemes").glob("*/stats/*"):
                _put(stat, "0")
            self.next_pid += 1
            _put(kd / "state", "on")
            _put(kd / "pid", str(self.next_pid))
            return
        if not running:
            raise _err(errno.EINVAL, path)
        if command == "commit" and not self._valid(kd):
            # damon_commit_ctx() failed part-way: the context is corrupted, kdamond exits.
            _put(kd / "state", "off")
            _put(kd / "pid", "-1")
            raise _err(errno.EINVAL, path)
        if command == "update_schemes_stats":
            self._refresh_stats(kd)
        elif command == "update_schemes_tried_bytes":
            for s in self._schemes(kd):
                _put(s / "tried_regions/total_bytes", str(self._eligible(kd, s)))
        elif command == "update_schemes_effective_quotas":
            for s in self._schemes(kd):
                _put(s / "quotas/effective_bytes", self._get(s / "quotas/bytes"))

    def _schemes(self, kd: Path) -> list[Path]:
        d = kd / "contexts/0/schemes"
        return [d / str(i) for i in range(int(self._get(d / "nr_schemes")))]

    def _valid(self, kd: Path) -> bool:
        c = kd / "contexts/0"
        unit = int(self._get(c / "addr_unit")) if (c / "addr_unit").exists() else 1
        min_region = max(PAGE_SIZE // unit, 1)
        if min_region & (min_region - 1):
            return False
        ops = self._get(c / "operations")
        if ops == "paddr" and int(self._get(c / "targets/nr_targets")) > 1:
            return False
        regions = c / "targets/0/regions"
        if regions.exists():
            last = -1
            for i in range(int(self._get(regions / "nr_regions"))):
                start = int(self._get(regions / str(i) / "start"))
                end = int(self._get(regions / str(i) / "end"))
                if start >= end or start < last:
                    return False
                last = end
        for s in self._schemes(kd):
            goals = s / "quotas/goals"
            for i in range(int(self._get(goals / "nr_goals"))):
                metric = self._get(goals / str(i) / "target_metric")
                if metric == "node_eligible_mem_bp" and ops != "paddr":
                    return False
        return True

    def _rejected(self, scheme: Path, start: int) -> bool:
        for where in ("filters", "core_filters"):
            d = scheme / where
            if not d.exists():
                continue
            for i in range(int(self._get(d / "nr_filters"))):
                f = d / str(i)
                if self._get(f / "type") != "addr" or self._get(f / "matching") != "Y":
                    continue
                if (f / "allow").exists() and self._get(f / "allow") == "Y":
                    continue  # an allow filter on a range rejects nothing in it
                lo, hi = int(self._get(f / "addr_start")), int(self._get(f / "addr_end"))
                if lo <= start < hi:
                    return True
        return False

    def _eligible(self, kd: Path, scheme: Path) -> int:
        return sum(
            hot
            for nid, hot in self.m.hot_bytes.items()
            if (start := self.m.node_start(nid)) is not None and not self._rejected(scheme, start)
        )

    def _refresh_stats(self, kd: Path) -> None:
        """One apply interval of every scheme, as the kernel would count it."""
        for s in self._schemes(kd):
            stats = s / "stats"
            eligible = self._eligible(kd, s)
            add = {"nr_tried": 1, "sz_tried": eligible}
            if (stats / "nr_snapshots").exists():
                add["nr_snapshots"] = 1
            quota = int(self._get(s / "quotas/bytes"))
            if self._get(s / "action") != "stat" and quota > 1:
                add["nr_applied"] = 1
                add["sz_applied"] = min(quota, eligible)
            for name, inc in add.items():
                _put(stats / name, str(int(self._get(stats / name)) + inc))
            _put(s / "quotas/effective_bytes", str(quota))

    # -- test conveniences ---------------------------------------------------------------

    def start_foreign(self, index: int = 0) -> int:
        """Another DAMON user stages and starts a kdamond, the way damo would."""
        admin = self.m.admin
        self.write(admin / "kdamonds/nr_kdamonds", str(index + 1))
        kd = admin / "kdamonds" / str(index)
        self.write(kd / "contexts/nr_contexts", "1")
        self.write(kd / "contexts/0/operations", "paddr")
        self.write(kd / "contexts/0/targets/nr_targets", "1")
        self.write(kd / "contexts/0/targets/0/regions/nr_regions", "1")
        self.write(kd / "contexts/0/targets/0/regions/0/start", "0")
        self.write(kd / "contexts/0/targets/0/regions/0/end", str(1 << 30))
        self.write(kd / "state", "on")
        return int(self._get(kd / "pid"))


def dump(root: Path) -> dict[str, str]:
    """Every file under ``root`` and its content: equal dumps mean nothing was written."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = p.read_text()
    return out


def make_machine(root: Path, version: str) -> tuple[FakeMachine, FakeKernel]:
    machine = FakeMachine(root=root, kernel=KERNELS[version])
    machine.lay_out()
    return machine, FakeKernel(machine)
