"""Runs INSIDE a QEMU guest (root, the guest's own DAMON tree): workloads in cgroups.

Mounts cgroup v2 (the busybox init does not), enables the memory controller and
creates the cgroups ``/a``, ``/b`` and ``/c``. A part starts one hot workload in
each of its cgroups, bound to node 1, runs damond with contexts over node 1 whose
``migrate_hot`` schemes pull one cgroup's pages each (a memcg filter) towards node
0, and samples every cgroup's ``memory.numa_stat`` while it runs; ``check`` runs
``damond check`` instead. One JSON result for every part. Standard library only:
Python under TCG is slow.

usage: python -m tests.vm.cgroup_scenario <out.json> <part>...   (parts: see PARTS)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.vm import guest_scenario as gs

CGROUP = Path("/sys/fs/cgroup")
WORKLOAD_MIB = 96
SETTLE_SAMPLES = 8
"""Consecutive samples (one a second) with every scheme standing still and no share
moving by more than STEADY_BP that end a run early; the host test checks the values
against its own, justified tolerance."""
STEADY_BP = 10
CGROUPS = ("a", "b", "c")
START_TIMEOUT_S = 240
LRU_ROWS = ("active_anon", "inactive_anon", "active_file", "inactive_file")


def setup_cgroups() -> dict[str, Any]:
    mounts = Path("/proc/mounts").read_text().splitlines()
    mounted = any(line.split()[2] == "cgroup2" for line in mounts)
    if not mounted:
        subprocess.run(["mount", "-t", "cgroup2", "cgroup2", str(CGROUP)], check=True)
    (CGROUP / "cgroup.subtree_control").write_text("+memory")
    for name in CGROUPS:
        (CGROUP / name).mkdir(exist_ok=True)
    return {
        "mounted_by_init": mounted,
        "subtree_control": (CGROUP / "cgroup.subtree_control").read_text().strip(),
    }


def workload(cgroup: str) -> subprocess.Popen[str]:
    """A process of ``cgroup`` touching its own anonymous buffer on node 1 every 20 ms.

    The shell joins the cgroup before numactl and Python start, so every page the
    workload allocates is charged to it. One strided slice assignment touches every
    page in C: DAMON's 5 ms samples see the buffer as hot even under TCG. No higher
    priority than the kdamonds: under TCG they would starve and migrate slowly."""
    code = f"""
import mmap, time
n = {WORKLOAD_MIB} << 20
m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
ones = bytes([1]) * (n // 4096)
m[0:n:4096] = ones
print("ready", flush=True)
while True:
    m[0:n:4096] = ones
    time.sleep(0.02)
"""
    procs = CGROUP / cgroup / "cgroup.procs"
    join = f'echo $$ > {procs} && exec numactl --membind=1 "$0" -c "$1"'
    p = subprocess.Popen(["sh", "-c", join, gs.PY, code], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    if p.stdout.readline().strip() != "ready":
        raise RuntimeError(f"workload of {cgroup} did not start (rc {p.wait()})")
    return p


def numa_stat(cgroup: str) -> dict[str, dict[int, int]]:
    """``memory.numa_stat``: row -> {node: bytes}."""
    out: dict[str, dict[int, int]] = {}
    for line in (CGROUP / cgroup / "memory.numa_stat").read_text().splitlines():
        key, *fields = line.split()
        out[key] = {int(f[1 : f.index("=")]): int(f[f.index("=") + 1 :]) for f in fields}
    return out


def lru_bytes(cgroup: str) -> dict[int, int]:
    """The cgroup's LRU bytes per node: what the kernel's node_memcg_used_bp counts."""
    stat = numa_stat(cgroup)
    nodes = {n for row in LRU_ROWS for n in stat.get(row, {})}
    return {n: sum(stat.get(row, {}).get(n, 0) for row in LRU_ROWS) for n in sorted(nodes)}


def node_total_bytes(node: int) -> int:
    """MemTotal of the node: the kernel's totalram in its node metrics."""
    for line in Path(f"/sys/devices/system/node/node{node}/meminfo").read_text().splitlines():
        if "MemTotal:" in line:
            return int(line.split()[3]) * 1024
    raise RuntimeError(f"no MemTotal for node {node}")


QUOTA = {"native": (2 << 20, 100), "daemon": (2 << 20, 1000)}
"""(max_bytes, reset_interval_ms) per mode. native: the kernel's tuner evaluates the goal
every 100 ms window; daemon: damond sets the quota once per 1 s iteration."""


def config(contexts: list[tuple[str, str, int]]) -> str:
    """One context over node 1 per (mode, cgroup, target_bp), pulling the cgroup's hot
    pages to node 0 (a memcg filter) towards its node_memcg_used_bp target on node 0."""
    out = gs.service_header()
    for mode, cgroup, target_bp in contexts:
        max_bytes, reset_ms = QUOTA[mode]
        # native: full quota below the target, none at it (7.1+); daemon mode: damond's own
        tuner = 'tuner = "temporal", ' if mode == "native" else ""
        out += f"""
[[contexts]]
name = "{cgroup}-{mode}"
node = 1
mode = "{mode}"
intervals = {{ sample_us = 5000, aggr_us = 100000, update_us = 1000000 }}
goal = {{ metric = "node_memcg_used_bp", nid = 0, path = "/{cgroup}", target_bp = {target_bp} }}
controller = {{ {tuner}lag_s = 1.0 }}

[contexts.scheme]
target_nid = 0
access_pattern = {{ nr_accesses_min = 1, age_min = 0 }}
quota = {{ max_bytes = {max_bytes}, reset_interval_ms = {reset_ms} }}
filters = [{{ type = "memcg", memcg_path = "/{cgroup}", matching = true, allow = true }}]
"""
    return out


def migrate_schemes() -> dict[str, Path]:
    """Damond's running migrate_hot schemes in the guest's tree, by their memcg filter's
    cgroup (``ops_filters`` on 6.15+, ``filters`` before)."""
    out: dict[str, Path] = {}
    for kd in sorted((gs.ADMIN / "kdamonds").glob("[0-9]*")):
        if gs.read(kd / "state") != "on":
            continue
        for scheme in sorted(kd.glob("contexts/0/schemes/[0-9]*")):
            if gs.read(scheme / "action") != "migrate_hot":
                continue
            for f in scheme.glob("*filters/[0-9]*"):
                if gs.read(f / "type") == "memcg":
                    out[gs.read(f / "memcg_path").lstrip("/")] = scheme
    return out


def scheme_files(scheme: Path) -> dict[str, Any]:
    """What damond wrote: goal, tuner and every filter of the scheme."""
    goal = scheme / "quotas/goals/0"
    out: dict[str, Any] = {
        "target_nid": gs.read(scheme / "target_nid"),
        "nr_goals": gs.read(scheme / "quotas/goals/nr_goals"),
        "goal": {
            f: gs.read(goal / f)
            for f in ("target_metric", "target_value", "nid", "path")
            if (goal / f).exists()
        },
        "goal_tuner": gs.read(scheme / "quotas/goal_tuner")
        if (scheme / "quotas/goal_tuner").exists()
        else None,
        "filters": {},
    }
    for where in ("core_filters", "ops_filters", "filters"):
        if not (scheme / where).is_dir():
            continue
        out["filters"][where] = [
            {f.name: gs.read(f) for f in sorted(fdir.iterdir()) if f.is_file()}
            for fdir in sorted((scheme / where).glob("[0-9]*"))
        ]
    return out


def log_events(log: Path) -> list[dict[str, Any]]:
    events = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def damond_metrics(log: Path) -> dict[str, list[int]]:
    """The goal metric damond measured per iteration, by context."""
    out: dict[str, list[int]] = {}
    for e in log_events(log):
        if e.get("event") in ("first iteration", "iteration") and e.get("metric_bp") is not None:
            out.setdefault(str(e.get("context")), []).append(int(e["metric_bp"]))
    return out


def settled(samples: list[dict[str, Any]], contexts: list[tuple[str, str, int]]) -> bool:
    """Every context's scheme has stood still (an effective quota of 0, or damond's
    least, 1) and its cgroup's share not moved for the last SETTLE_SAMPLES samples:
    longer than damond holds still while DAMON sees nothing hot for a moment."""
    last = samples[-SETTLE_SAMPLES:]
    if len(last) < SETTLE_SAMPLES:
        return False
    for _, cgroup, _ in contexts:
        values = [s["bp"][cgroup] for s in last]
        if max(values) - min(values) > STEADY_BP:
            return False
        if any(s["effective_bytes"][cgroup] not in ("0", "1") for s in last):
            return False
    return True


def converge(
    res: dict[str, Any],
    log: Path,
    contexts: list[tuple[str, str, int]],
    cgroups: tuple[str, ...],
    run_s: float,
) -> None:
    """Hot workloads of ``cgroups`` on node 1; damond's contexts each pull one cgroup's
    pages towards its target share of node 0 (a cgroup without a context shows what the
    filters keep out). Stops once every context settled, or ``run_s`` after the
    workloads went hot."""
    res["contexts"] = [
        {"mode": m, "cgroup": cg, "target_bp": t, "quota": list(QUOTA[m])} for m, cg, t in contexts
    ]
    Path(gs.CONFIG).write_text(config(contexts))
    loads: dict[str, subprocess.Popen[str]] = {}
    for cg in cgroups:
        loads[cg] = workload(cg)
        # stopped while damond starts (20-60 s of Python imports under TCG), which they
        # would slow down; stopped, they look cold and nothing moves yet
        loads[cg].send_signal(signal.SIGSTOP)
    started = time.monotonic()
    with open(log, "w") as out:
        damond = subprocess.Popen(
            [gs.PY, "-m", "damond", "run", "-c", gs.CONFIG], stdout=out, stderr=out
        )
    samples: list[dict[str, Any]] = []
    try:
        wanted = {cg for _, cg, _ in contexts}
        schemes: dict[str, Path] = {}
        while set(schemes) != wanted and time.monotonic() - started < START_TIMEOUT_S:
            time.sleep(1)
            if damond.poll() is not None:
                return
            schemes = migrate_schemes()
        if set(schemes) != wanted:
            raise RuntimeError(f"damond's schemes were not all on after {START_TIMEOUT_S} s")
        res["kdamonds_on_s"] = round(time.monotonic() - started, 1)
        res["sysfs"] = {cg: scheme_files(scheme) for cg, scheme in schemes.items()}
        res["before"] = {cg: lru_bytes(cg) for cg in loads}
        for p in loads.values():
            p.send_signal(signal.SIGCONT)
        on = time.monotonic()
        while time.monotonic() - on < run_s and damond.poll() is None:
            time.sleep(1)
            lru = {cg: lru_bytes(cg) for cg in loads}
            total = node_total_bytes(0)
            samples.append(
                {
                    "t": round(time.monotonic() - on, 1),
                    "node0_total_bytes": total,
                    "bp": {cg: lru[cg].get(0, 0) * 10000 // total for cg in loads},
                    "lru": lru,
                    "effective_bytes": {
                        cg: gs.read(scheme / "quotas/effective_bytes")
                        for cg, scheme in schemes.items()
                    },
                }
            )
            if settled(samples, contexts):
                break
    finally:
        res["samples"] = samples
        res["after"] = {cg: lru_bytes(cg) for cg in loads}
        res["wall_s"] = round(time.monotonic() - started, 1)
        if damond.poll() is None:
            damond.send_signal(signal.SIGTERM)
        res["damond_rc"] = damond.wait(timeout=60)
        res["nr_kdamonds_after_exit"] = gs.read(gs.ADMIN / "kdamonds/nr_kdamonds")
        res["damond_metric_bp"] = damond_metrics(log)
        res["log_problems"] = [
            e for e in log_events(log) if e.get("level") in ("error", "warning", "critical")
        ][:5]
        if res["damond_rc"]:
            res["log_tail"] = log.read_text(errors="replace")[-2000:]
        for p in loads.values():
            p.kill()  # SIGKILL ends a stopped process too
            p.wait()


def check(res: dict[str, Any], log: Path, contexts: list[tuple[str, str, int]]) -> None:
    """``damond check``: what the kernel measures itself and what damond computes."""
    Path(gs.CONFIG).write_text(config(contexts))
    r = subprocess.run(
        [gs.PY, "-m", "damond", "check", "-c", gs.CONFIG],
        capture_output=True,
        text=True,
        timeout=300,
    )
    res.update(rc=r.returncode, stdout=r.stdout, stderr=r.stderr[-2000:])


PARTS: dict[str, tuple[Any, ...]] = {
    # /a: the kernel measures node_memcg_used_bp and tunes the quota (7.2); /b: damond
    # measures it from memory.numa_stat and sets the quota; each scheme's memcg filter
    # keeps it to its own cgroup's pages
    "pair": (converge, [("native", "a", 500), ("daemon", "b", 250)], CGROUPS, 120.0),
    # damond computes the metric the kernel lacks (6.12). One other hot cgroup only: the
    # kernel charges the quota with what its filters then reject, so each hot cgroup the
    # scheme must skip slows it down
    "daemon": (converge, [("daemon", "a", 250)], ("a", "b"), 120.0),
    "check": (check, [("daemon", "a", 250)]),
}


def main() -> int:
    out = Path(sys.argv[1])
    results: dict[str, Any] = {"kernel": os.uname().release, "cgroup": setup_cgroups()}
    for name in sys.argv[2:]:
        fn, *args = PARTS[name]
        res: dict[str, Any] = {}
        results[name] = res
        t0 = time.monotonic()
        try:
            fn(res, Path(f"{out}.{name}.log"), *args)
        except Exception as exc:
            res["error"] = f"{type(exc).__name__}: {exc}"
        res["part_s"] = round(time.monotonic() - t0, 1)
        out.write_text(json.dumps(results, indent=1))
        print(name, json.dumps({k: v for k, v in res.items() if k != "samples"})[:1500])
    return 0


if __name__ == "__main__":
    sys.exit(main())
