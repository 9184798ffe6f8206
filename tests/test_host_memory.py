"""The host's memory readings (node meminfo, a cgroup's memory.numa_stat, /proc/vmstat LRU,
/proc/pressure/memory): parsed from a fake /proc, /sys and cgroupfs, filled into a sysfs
snapshot only when the goal needs them, failures named and held; and the real host's
files, read only, in the formats the readers expect."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from damond.backend.sysfs import hostmemory as hm
from damond.backend.sysfs.io import Session, SysfsIO
from damond.config import ContextConfig
from damond.control.coordinator import Coordinator
from damond.control.translation import build_context
from damond.model import damon as model
from damond.model.errors import BackendError
from damond.runtime.loop import ContextLoop
from tests.fakedamon import make_machine
from tests.sysfs_support import backend, pull_context

PAGE = 4096
GiB = 1 << 30
MiB = 1 << 20
M = model.GoalMetric


def session() -> Session:
    return Session(SysfsIO(), ebusy_budget_s=0.1)


def put(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def node_meminfo(nid: int, total_kb: int, free_kb: int, lru_kb: tuple[int, ...]) -> str:
    names = ("Active(anon)", "Inactive(anon)", "Active(file)", "Inactive(file)")
    lines = [f"Node {nid} MemTotal:  {total_kb} kB", f"Node {nid} MemFree:  {free_kb} kB"]
    lines += [f"Node {nid} MemUsed:  {total_kb - free_kb} kB"]
    lines += [f"Node {nid} {n}:  {v} kB" for n, v in zip(names, lru_kb, strict=True)]
    lines += [f"Node {nid} HugePages_Total:     0"]
    return "\n".join(lines) + "\n"


NUMA_STAT = (
    "anon N0=1000 N1=2000\n"
    "file N0=400 N1=100\n"
    "shmem N0=7 N1=0\n"
    "inactive_anon N0=1024 N1=1024\n"
    "active_anon N0=0 N1=1000\n"
    "inactive_file N0=300 N1=0\n"
    "active_file N0=100 N1=100\n"
    "unevictable N0=99999 N1=0\n"
)


def fake_host(root: Path) -> hm.HostRoots:
    """Two nodes, a cgroup2 mount at a path with a space, /db with memory.numa_stat."""
    devices, proc, cgroup = root / "sys/devices/system", root / "proc", root / "cg roup"
    put(devices / "node/node0/meminfo", node_meminfo(0, 4 << 20, 1 << 20, (1, 2, 3, 4)))
    put(devices / "node/node1/meminfo", node_meminfo(1, 8 << 20, 6 << 20, (10, 20, 30, 40)))
    put(
        proc / "vmstat",
        "nr_free_pages 12\nnr_inactive_anon 100\nnr_active_anon 10\n"
        "nr_inactive_file 300\nnr_active_file 30\npgpromote_success 5\n",
    )
    put(
        proc / "pressure/memory",
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=123456\n"
        "full avg10=0.00 avg60=0.00 avg300=0.00 total=99\n",
    )
    put(
        proc / "self/mounts",
        "proc /proc proc rw 0 0\n"
        f"cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n"
        f"cgroup2 {str(cgroup).replace(' ', chr(92) + '040')} cgroup2 rw 0 0\n",
    )
    put(cgroup / "cgroup.controllers", "cpu io memory pids\n")
    put(cgroup / "db/memory.numa_stat", NUMA_STAT)
    return hm.HostRoots(devices_root=devices, proc_root=proc, page_size=PAGE)


def goal(metric: M, nid: int = 0, path: str = "") -> model.QuotaGoal:
    return model.QuotaGoal(metric, 1, nid=nid, path=path)


# -- needs --------------------------------------------------------------------------------


def test_each_metric_needs_its_own_readings() -> None:
    assert not hm.needs_of([goal(M.NODE_TARGET_MEM_BP), goal(M.NODE_ELIGIBLE_MEM_BP)])
    assert not hm.needs_of([goal(M.USER_INPUT)])
    assert hm.needs_of([goal(M.NODE_MEM_FREE_BP, 1)]) == hm.MemoryNeeds(nodes=frozenset({1}))
    assert hm.needs_of([goal(M.NODE_MEMCG_FREE_BP, 0, "/db")]) == hm.MemoryNeeds(
        nodes=frozenset({0}), cgroups=frozenset({"/db"})
    )
    assert hm.needs_of([goal(M.INACTIVE_MEM_BP)]) == hm.MemoryNeeds(lru=True)
    assert hm.needs_of([goal(M.SOME_MEM_PSI_US)]) == hm.MemoryNeeds(psi=True)


# -- readers ------------------------------------------------------------------------------


def test_readings_of_every_kind(tmp_path: Path) -> None:
    roots = fake_host(tmp_path)
    needs = hm.needs_of(
        [
            goal(M.NODE_MEM_USED_BP, 0),
            goal(M.NODE_MEMCG_USED_BP, 1, "/db"),
            goal(M.NODE_MEMCG_USED_BP, 1, "/"),
            goal(M.ACTIVE_MEM_BP),
            goal(M.SOME_MEM_PSI_US),
        ]
    )
    r = hm.read_memory(session(), roots, needs)
    assert r.problems == ()
    assert r.node_total_bytes == {0: 4 * GiB, 1: 8 * GiB}
    assert r.node_free_bytes == {0: 1 * GiB, 1: 6 * GiB}
    # the four LRU rows only: anon/file/shmem/unevictable are other views of the pages
    assert r.memcg_node_bytes["/db"] == {0: 1024 + 300 + 100, 1: 1024 + 1000 + 100}
    # the root cgroup's LRU on each node is the node's
    assert r.memcg_node_bytes["/"] == {0: 10 * 1024, 1: 100 * 1024}
    assert (r.active_bytes, r.inactive_bytes) == (40 * PAGE, 400 * PAGE)
    assert r.psi_some_total_us == 123456


def test_configured_cgroup_root_wins_over_the_mount_table(tmp_path: Path) -> None:
    roots = fake_host(tmp_path)
    other = tmp_path / "other"
    put(other / "db/memory.numa_stat", NUMA_STAT.replace("N0=1024", "N0=5"))
    r = hm.read_memory(
        session(),
        dataclasses.replace(roots, cgroup_root=other),
        hm.needs_of([goal(M.NODE_MEMCG_USED_BP, 0, "/db")]),
    )
    assert r.memcg_node_bytes["/db"][0] == 5 + 300 + 100


def test_a_cgroup_gone_is_named_and_the_rest_is_read(tmp_path: Path) -> None:
    roots = fake_host(tmp_path)
    needs = hm.needs_of(
        [goal(M.NODE_MEMCG_USED_BP, 0, "/db"), goal(M.NODE_MEMCG_USED_BP, 0, "/gone")]
    )
    r = hm.read_memory(session(), roots, needs)
    assert set(r.memcg_node_bytes) == {"/db"}
    assert r.node_total_bytes == {0: 4 * GiB}
    (problem,) = r.problems
    assert problem == f"cgroup /gone: {tmp_path / 'cg roup/gone'} does not exist (gone, or a typo)"


def test_a_cgroup_without_the_memory_controller_is_explained(tmp_path: Path) -> None:
    roots = fake_host(tmp_path)
    (tmp_path / "cg roup/batch").mkdir()
    r = hm.read_memory(session(), roots, hm.needs_of([goal(M.NODE_MEMCG_FREE_BP, 0, "/batch")]))
    (problem,) = r.problems
    assert "batch/memory.numa_stat: the memory controller is not enabled for it" in problem
    put(tmp_path / "cg roup/cgroup.controllers", "cpu io pids\n")
    r = hm.read_memory(session(), roots, hm.needs_of([goal(M.NODE_MEMCG_FREE_BP, 0, "/batch")]))
    (problem,) = r.problems
    assert "has no memory controller" in problem and "cgroup.controllers" in problem


def test_no_cgroup2_mount_is_named(tmp_path: Path) -> None:
    roots = fake_host(tmp_path)
    put(roots.proc_root / "self/mounts", "proc /proc proc rw 0 0\n")
    r = hm.read_memory(session(), roots, hm.needs_of([goal(M.NODE_MEMCG_USED_BP, 0, "/db")]))
    assert r.problems == (
        f"read {roots.proc_root / 'self/mounts'}: no cgroup2 file system is mounted",
    )
    assert r.memcg_node_bytes == {} and r.node_total_bytes == {0: 4 * GiB}


@pytest.mark.parametrize(
    ("file", "text", "message"),
    [
        ("sys/devices/system/node/node0/meminfo", "Node 0 MemTotal: 10 kB\n", "no MemFree line"),
        ("sys/devices/system/node/node0/meminfo", "Node 0 MemTotal: lots\n", "unparsable line"),
        ("sys/devices/system/node/node0/meminfo", "Node 1 MemTotal: 1 kB\n", "a line of node 1"),
        (
            "sys/devices/system/node/node0/meminfo",
            "Node 0 MemTotal: 0 kB\nNode 0 MemFree: 0 kB\n",
            "MemTotal is 0",
        ),
        (
            "cg roup/db/memory.numa_stat",
            "active_anon N0=1 N1\n",
            "unparsable active_anon entry 'N1'",
        ),
        ("cg roup/db/memory.numa_stat", "active_anon N0=1\n", "no inactive_anon, active_file"),
        (
            "proc/vmstat",
            "nr_active_anon 1\nnr_active_file x\n",
            "unparsable line 'nr_active_file x'",
        ),
        ("proc/vmstat", "nr_active_anon 1\n", "no nr_active_file, nr_inactive_anon"),
        ("proc/pressure/memory", "full avg10=0 total=1\n", "no 'some' line"),
        ("proc/pressure/memory", "some avg10=0.00 total=many\n", "unparsable line"),
    ],
)
def test_every_bad_answer_names_its_file(
    tmp_path: Path, file: str, text: str, message: str
) -> None:
    roots = fake_host(tmp_path)
    put(tmp_path / file, text)
    needs = hm.needs_of(
        [goal(M.NODE_MEMCG_USED_BP, 0, "/db"), goal(M.ACTIVE_MEM_BP), goal(M.SOME_MEM_PSI_US)]
    )
    r = hm.read_memory(session(), roots, needs)
    (problem,) = r.problems
    assert problem.startswith(f"read {tmp_path / file}: ") and message in problem


def test_missing_files_are_named(tmp_path: Path) -> None:
    roots = fake_host(tmp_path)
    (roots.proc_root / "pressure/memory").unlink()
    (roots.devices_root / "node/node1/meminfo").unlink()
    needs = hm.needs_of([goal(M.NODE_MEM_USED_BP, 1), goal(M.SOME_MEM_PSI_US)])
    r = hm.read_memory(session(), roots, needs)
    assert r.problems == (
        f"read {roots.devices_root / 'node/node1/meminfo'}: ENOENT (No such file or directory)",
        f"read {roots.proc_root / 'pressure/memory'}: ENOENT (No such file or directory)",
    )
    assert r.node_total_bytes == {}


def test_the_root_cgroup_needs_the_nodes_lru_lines(tmp_path: Path) -> None:
    roots = fake_host(tmp_path)
    put(roots.devices_root / "node/node0/meminfo", "Node 0 MemTotal: 8 kB\nNode 0 MemFree: 4 kB\n")
    r = hm.read_memory(session(), roots, hm.needs_of([goal(M.NODE_MEMCG_USED_BP, 0, "/")]))
    assert r.node_total_bytes == {0: 8192} and "/" not in r.memcg_node_bytes
    (problem,) = r.problems
    assert "node0/meminfo: no Active(anon), Inactive(anon)" in problem


# -- the sysfs backend's snapshot -------------------------------------------------------


def context(**goal_fields: object) -> ContextConfig:
    return ContextConfig.model_validate(pull_context(goal=goal_fields))


async def test_snapshot_reads_memory_only_for_a_goal_that_needs_it(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "7.2")
    roots = fake_host(m.root)
    assert (roots.devices_root, roots.proc_root) == (m.devices, m.proc)  # the fake kernel's
    b = backend(m, k, tmp_path / "state", sysfs={"cgroup_root": str(m.root / "cg roup")})
    await b.open()
    try:
        await b.start_context(
            build_context(context(metric="node_eligible_mem_bp", nid=0, target_bp=6000))
        )
        assert (await b.snapshot("pull")).memory is None
        await b.stop_context("pull")
        cfg = context(metric="node_memcg_used_bp", nid=1, path="/db", target_bp=3000)
        ctx = build_context(cfg)  # daemon mode: no goal for the kernel, one to read for
        assert ctx.memory_goal == model.QuotaGoal(M.NODE_MEMCG_USED_BP, 3000, nid=1, path="/db")
        await b.start_context(ctx)
        snap = await b.snapshot("pull")
        assert snap.memory is not None and snap.memory.problems == ()
        assert snap.memory.node_total_bytes == {1: 8 * GiB}
        assert snap.memory.memcg_node_bytes == {"/db": {0: 1424, 1: 2124}}
        # the cgroup goes away: the snapshot still comes, naming what it could not read
        os.remove(m.root / "cg roup/db/memory.numa_stat")
        (m.root / "cg roup/db").rmdir()
        snap = await b.snapshot("pull")
        assert snap.running and snap.memory is not None
        assert snap.memory.problems == (
            f"cgroup /db: {m.root / 'cg roup/db'} does not exist (gone, or a typo)",
        )
    finally:
        await b.close()


async def test_a_context_whose_cgroup_is_gone_is_held_not_restarted(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "7.2")
    fake_host(m.root)
    b = backend(m, k, tmp_path / "state", sysfs={"cgroup_root": str(m.root / "cg roup")})
    cfg = context(metric="node_memcg_used_bp", nid=0, path="/gone", target_bp=3000)
    loop = ContextLoop(cfg, b, Coordinator(1.0), 1.0)
    await b.open()
    try:
        await loop.setup()
        await loop.step()  # no exception: the supervisor would restart the kdamond
        await loop.step()
    finally:
        await loop.teardown()
        await b.close()
    status = loop.status
    assert status.held and status.held_reason == "unmeasured" and status.iterations == 2
    assert status.snapshot is not None and status.snapshot.memory is not None
    assert status.snapshot.memory.problems == (
        f"cgroup /gone: {m.root / 'cg roup/gone'} does not exist (gone, or a typo)",
    )


# -- the real host, read only ---------------------------------------------------------


HOST = hm.HostRoots()


def test_the_hosts_node_meminfo_parses() -> None:
    nodes = sorted(int(p.name[4:]) for p in Path("/sys/devices/system/node").glob("node[0-9]*"))
    if not nodes:
        pytest.skip("this host lists no NUMA node under /sys/devices/system/node")
    r = hm.read_memory(
        session(), HOST, hm.MemoryNeeds(nodes=frozenset(nodes), cgroups=frozenset({"/"}))
    )
    assert r.problems == ()
    for nid in nodes:
        assert 0 <= r.node_free_bytes[nid] <= r.node_total_bytes[nid]
        assert 0 < r.memcg_node_bytes["/"][nid] <= r.node_total_bytes[nid]


def test_the_hosts_vmstat_lru_and_pressure_parse() -> None:
    active, inactive = hm.read_lru_bytes(session(), Path("/proc/vmstat"), HOST.page_size)
    assert active > 0 and inactive > 0
    pressure = Path("/proc/pressure/memory")
    if not pressure.exists():
        pytest.skip("this kernel has no PSI (/proc/pressure/memory)")
    try:
        total = hm.read_psi_some_total_us(session(), pressure)
    except BackendError as exc:
        if "EOPNOTSUPP" in str(exc):
            pytest.skip("PSI is disabled on this host (psi=0)")
        raise
    assert total >= 0


def test_the_hosts_cgroup2_numa_stat_parses_or_is_explained() -> None:
    if not re.search(r"^\S+ \S+ cgroup2 ", Path("/proc/self/mounts").read_text(), re.MULTILINE):
        pytest.skip("no cgroup2 file system is mounted on this host")
    mount = hm.find_cgroup2_mount(session(), Path("/proc/self/mounts"))
    assert mount.is_dir()
    stats = sorted(mount.glob("*/memory.numa_stat"))
    if stats:
        per_node = hm.read_memcg_lru(session(), mount, "/" + stats[0].parent.name)
        assert per_node and all(v >= 0 for v in per_node.values())
        return
    # the memory controller is elsewhere (cgroup v1): a memcg goal is held, and says why
    cgroup = "/" + next((d.name for d in mount.iterdir() if d.is_dir()), "none")
    r = hm.read_memory(session(), HOST, hm.MemoryNeeds(cgroups=frozenset({cgroup})))
    (problem,) = r.problems
    assert problem.startswith(f"cgroup {cgroup}: ")
    assert "no memory controller" in problem or "memory controller is not enabled" in problem
