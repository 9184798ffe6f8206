"""Runs INSIDE a QEMU guest (as PID 1's child, root, the guest's own DAMON tree).

Starts workloads bound to NUMA nodes, runs damond against the guest's real
sysfs, samples what happens and writes one JSON result. Standard library only:
Python under TCG is slow, and importing little keeps each boot short.

usage: guest_scenario.py <out.json>
"""

from __future__ import annotations

import errno
import json
import mmap
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ADMIN = Path("/sys/kernel/mm/damon/admin")
KD0 = ADMIN / "kdamonds/0"
PY = sys.executable
STATE_DIR = "/tmp/damond-state"
CONFIG = "/tmp/damond.toml"
LOG = "/tmp/damond.log"  # main() moves it next to the result, for reading after the run


def service_header() -> str:
    """The service part of every guest config: damond on the guest's sysfs, debug logs,
    no metrics endpoint or broker, at least 100 regions."""
    return f"""backend = "sysfs"
state_dir = "{STATE_DIR}"
log_level = "debug"
interval_s = 1.0

[metrics]
enabled = false

[mqtt]
enabled = false

[sysfs]
nr_regions_min = 100
"""


def config(mode: str, target_bp: int) -> str:
    # The hot set is small (hundreds of MiB) and DAMON's first regions are huge, so
    # the quotas are small: damond's controller gets 8 MiB per 1 s window (about
    # 200 bp), the kernel's tuners 4 MiB per 100 ms window. Under TCG migrated pages
    # look hot at their destination only 2-3 s later: the controller's lag_s.
    reset_ms, max_bytes = (1000, 8 << 20) if mode == "daemon" else (100, 4 << 20)
    tuner = "temporal" if mode == "native" else "consist"
    return f"""{service_header()}
[[contexts]]
name = "pull"
node = 1
mode = "{mode}"
intervals = {{ sample_us = 5000, aggr_us = 100000, update_us = 1000000 }}
goal = {{ metric = "node_eligible_mem_bp", nid = 0, target_bp = {target_bp} }}
controller = {{ tuner = "{tuner}", lag_s = 3.0 }}

[contexts.scheme]
target_nid = 0
access_pattern = {{ nr_accesses_min = 1, age_min = 0 }}
quota = {{ max_bytes = {max_bytes}, reset_interval_ms = {reset_ms} }}
"""


def workload(node: int, mib: int, hot: bool) -> subprocess.Popen[str]:
    # One strided slice assignment touches every page in C: a pass takes milliseconds
    # even under TCG, so DAMON's 5 ms samples see hot pages as accessed.
    code = f"""
import mmap, time
n = {mib} << 20
m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
ones = bytes([1]) * (n // 4096)
m[0:n:4096] = ones
print("ready", flush=True)
while True:
    if {hot}:
        m[0:n:4096] = ones
    time.sleep(0.02 if {hot} else 3600)
"""
    # Ahead of damond in the guest's scheduler, like the application it serves: under
    # TCG a workload waiting behind damond's start-up misses aggregation intervals and
    # looks cold.
    p = subprocess.Popen(
        ["numactl", f"--membind={node}", "nice", "-n", "-5", PY, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None
    p.stdout.readline()
    return p


def pages_by_node(pid: int) -> dict[int, int]:
    out: dict[int, int] = {}
    for line in Path(f"/proc/{pid}/numa_maps").read_text().splitlines():
        for m in re.finditer(r"\bN(\d+)=(\d+)", line):
            out[int(m.group(1))] = out.get(int(m.group(1)), 0) + int(m.group(2))
    return out


def migrated_pages() -> int:
    for line in Path("/proc/vmstat").read_text().splitlines():
        if line.startswith("pgmigrate_success "):
            return int(line.split()[1])
    return 0


def read(path: Path) -> str:
    """A sysfs file's value; EBUSY (DAMON's lock taken by damond) is retried."""
    for _ in range(200):
        try:
            return path.read_text().strip()
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                return f"<{exc.strerror}>"
            time.sleep(0.05)
    return "<EBUSY>"


def dump(root: Path) -> dict[str, str]:
    return {str(p): read(p) for p in sorted(root.rglob("*")) if p.is_file()}


def log_events() -> list[dict[str, Any]]:
    events = []
    try:
        lines = Path(LOG).read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def wait_event(name: str, timeout_s: float, after: int = 0) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for e in log_events()[after:]:
            if e.get("event") == name:
                return e
        time.sleep(0.25)
    return None


def start_damond() -> subprocess.Popen[bytes]:
    log = open(LOG, "a")  # noqa: SIM115 - handed to the child
    return subprocess.Popen([PY, "-m", "damond", "run", "-c", CONFIG], stdout=log, stderr=log)


def check() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "damond", "check", "-c", CONFIG], capture_output=True, text=True, timeout=120
    )


def iterations() -> list[tuple[float, int]]:
    """(seconds since damond's first measurement, metric_bp) of every measured iteration."""
    out: list[tuple[float, int]] = []
    t0 = None
    for e in log_events():
        if e.get("event") not in ("first iteration", "iteration") or not e.get("metric_bp"):
            continue  # 0: nothing eligible anywhere in that interval, no measurement
        ts = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
        t0 = ts if t0 is None else t0
        out.append((round(ts - t0, 2), int(e["metric_bp"])))
    return out


def converge(
    res: dict[str, Any], mode: str, target_bp: int, run_s: float, keep: bool = False
) -> subprocess.Popen[bytes] | None:
    """Hot memory mostly on node 1; damond pulls it to node 0 until node 0 holds
    ``target_bp`` of it. Stops early once the metric stayed within 2 % for 3 iterations."""
    Path(CONFIG).write_text(config(mode, target_bp))
    Path(LOG).write_text("")
    hot0 = workload(0, 64, hot=True)
    hot1 = workload(1, 256, hot=True)
    res["before"] = {"hot0": pages_by_node(hot0.pid), "hot1": pages_by_node(hot1.pid)}
    mig0 = migrated_pages()
    started = time.monotonic()
    damond = start_damond()
    samples = []
    while time.monotonic() - started < run_s:
        time.sleep(2)
        samples.append(
            {
                "t": round(time.monotonic() - started, 1),
                "hot1_pages": pages_by_node(hot1.pid),
                "migrated_pages": migrated_pages() - mig0,
                "goal_current": read(KD0 / "contexts/0/schemes/0/quotas/goals/0/current_value"),
                "effective_bytes": read(KD0 / "contexts/0/schemes/0/quotas/effective_bytes"),
            }
        )
        if damond.poll() is not None:
            break
        its = iterations()
        if len(its) >= 3 and all(abs(m - target_bp) <= 200 for _, m in its[-3:]):
            break
    res["wall_s"] = round(time.monotonic() - started, 1)
    res["samples"] = samples
    res["sysfs"] = {
        "target_metric": read(KD0 / "contexts/0/schemes/0/quotas/goals/0/target_metric"),
        "goal_nid": read(KD0 / "contexts/0/schemes/0/quotas/goals/0/nid"),
        "goal_tuner": read(KD0 / "contexts/0/schemes/0/quotas/goal_tuner"),
        "state": read(KD0 / "state"),
    }
    res["after"] = {"hot0": pages_by_node(hot0.pid), "hot1": pages_by_node(hot1.pid)}
    res["migrated_bytes"] = (migrated_pages() - mig0) * mmap.PAGESIZE
    its = iterations()
    res["iterations"] = its
    within = [t for t, m in its if abs(m - target_bp) <= 200]
    res["time_to_2pct_s"] = within[0] if within else None
    res["first_metric_bp"] = its[0][1] if its else None
    res["median_last10_bp"] = sorted(m for _, m in its[-10:])[len(its[-10:]) // 2] if its else None
    res["last_metric_bp"] = its[-1][1] if its else None
    res["errors"] = [e for e in log_events() if e.get("level") in ("error", "warning")][:5]
    Path(f"{LOG}.{mode}").write_text(Path(LOG).read_text())
    hot0.kill()
    hot1.kill()
    if keep and damond.poll() is None:
        return damond
    stop_damond(damond, res)
    return None


def stop_damond(damond: subprocess.Popen[bytes], res: dict[str, Any]) -> None:
    if damond.poll() is None:
        damond.send_signal(signal.SIGTERM)
    res["damond_rc"] = damond.wait(timeout=60)
    res["stderr_tail"] = Path(LOG).read_text()[-1500:] if res["damond_rc"] else ""
    res["nr_kdamonds_after_exit"] = read(ADMIN / "kdamonds/nr_kdamonds")


def stage_foreign() -> None:
    """A foreign DAMON user (like damo) starts a kdamond."""
    for rel, value in (
        ("kdamonds/nr_kdamonds", "1"),
        ("kdamonds/0/contexts/nr_contexts", "1"),
        ("kdamonds/0/contexts/0/operations", "paddr"),
        ("kdamonds/0/contexts/0/targets/nr_targets", "1"),
        ("kdamonds/0/contexts/0/targets/0/regions/nr_regions", "1"),
        ("kdamonds/0/contexts/0/targets/0/regions/0/start", str(1 << 30)),
        ("kdamonds/0/contexts/0/targets/0/regions/0/end", str(2 << 30)),
        ("kdamonds/0/state", "on"),
    ):
        (ADMIN / rel).write_text(value)


def refuse(res: dict[str, Any]) -> None:
    Path(CONFIG).write_text(config("kernel", 6000))
    stage_foreign()
    res["foreign_pid"] = read(KD0 / "pid")
    before = dump(ADMIN)
    r = check()
    res["foreign"] = {"rc": r.returncode, "stderr": r.stderr, "unchanged": dump(ADMIN) == before}
    (KD0 / "state").write_text("off")
    (ADMIN / "kdamonds/nr_kdamonds").write_text("0")
    stat = Path("/sys/module/damon_stat/parameters/enabled")
    if stat.exists():
        stat.write_text("Y")
        time.sleep(1)
        before = dump(ADMIN)
        r = check()
        res["damon_stat"] = {
            "rc": r.returncode,
            "stderr": r.stderr,
            "unchanged": dump(ADMIN) == before,
        }
        stat.write_text("N")


def adopt_fault(res: dict[str, Any], first: subprocess.Popen[bytes]) -> None:
    """Kill damond (SIGKILL), start it again: it must re-adopt its running kdamond.
    Then leave a bad value in its kdamond: the next commit fails and is recovered."""
    hot1 = workload(1, 256, hot=True)
    res["pid_before"] = read(KD0 / "pid")
    first.kill()
    first.wait()
    res["state_after_kill"] = read(KD0 / "state")
    res["pid_after_kill"] = read(KD0 / "pid")
    Path(CONFIG).write_text(config("daemon", 9500))  # far from the goal: damond must act
    mark = len(log_events())
    second = start_damond()
    res["adopted"] = wait_event("re-adopted kdamond", 90, mark)
    res["pid_after_restart"] = read(KD0 / "pid")
    addr_unit = KD0 / "contexts/0/addr_unit"
    region = KD0 / "contexts/0/targets/0/regions/0"
    if addr_unit.exists():
        res["fault"] = "addr_unit=3"
        addr_unit.write_text("3")
    else:
        res["fault"] = "region 0 end < start"
        res["region0"] = [read(region / "start"), read(region / "end")]
        (region / "end").write_text("4096")
        (region / "start").write_text("8192")
    mark = len(log_events())
    failed = wait_event("context loop failed; restarting", 60, mark)
    res["failure_logged"] = failed is not None
    res["failure_error"] = [
        f"{e.get('event')}: {e.get('error') or e.get('differs_from_damond')}"
        for e in log_events()[mark:]
        if str(e.get("event", "")).startswith(("kdamond is off", "state command failed"))
    ][:1]
    res["recovered"] = wait_event("kdamond on", 60, mark) is not None
    time.sleep(1)
    res["state_end"] = read(KD0 / "state")
    res["pid_end"] = read(KD0 / "pid")
    res["addr_unit_end"] = read(addr_unit) if addr_unit.exists() else None
    res["region0_end"] = [read(region / "start"), read(region / "end")]
    stop_damond(second, res)
    hot1.kill()


def part(results: dict[str, Any], name: str, out: Path, fn: Any, *args: Any) -> Any:
    res: dict[str, Any] = {}
    results[name] = res
    t0 = time.monotonic()
    value = None
    try:
        value = fn(res, *args)
    except Exception as exc:
        res["error"] = f"{type(exc).__name__}: {exc}"
    res["part_s"] = round(time.monotonic() - t0, 1)
    out.write_text(json.dumps(results, indent=1))
    print(name, json.dumps({k: v for k, v in res.items() if k not in ("samples",)})[:1500])
    return value


def main() -> int:
    global LOG
    out = Path(sys.argv[1])
    LOG = f"{out}.damond.log"
    results: dict[str, Any] = {"kernel": os.uname().release}
    part(results, "refuse", out, refuse)
    damond = part(results, "daemon", out, converge, "daemon", 6000, 60.0, True)
    if damond is not None:
        part(results, "adopt_fault", out, adopt_fault, damond)
    part(results, "kernel", out, converge, "kernel", 6000, 45.0)
    part(results, "native", out, converge, "native", 6000, 45.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
