"""Runs INSIDE a QEMU guest on Linux 7.2: damond's two contexts on one goal, and damo.

One boot, four parts, one JSON result:

- ``damond``: a pull context (node 1, ``migrate_hot`` to node 0) and a push context
  (node 0, ``migrate_cold`` to node 1) in daemon mode steer ``node_eligible_mem_bp``
  of node 0 to one target; sampled until a steady minute after settling;
- ``report``: while damond still steers, ``damo report damon --format json`` reads
  damond's kdamonds (compared with the sysfs tree by the host's test);
- ``kernel``: the same workload with damo starting the kernel's own quota-goal
  tuning for the same goal (a pull and a push scheme, each with a
  ``node_eligible_mem_bp`` goal), sampled the same way;
- ``refuse``: while damo's kdamond runs, ``damond run`` must exit 3 and leave
  damo's tree as it was.

Standard library only (and guest_scenario's helpers). usage:
python -m tests.vm.two_context_scenario <out.json> <damo dir (PYTHONPATH holding damo)>
"""

from __future__ import annotations

import json
import mmap
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.vm import guest_scenario as gs

TARGET_BP = 6000
BAND_BP = 300
STEADY_S = 60.0
STARTUP_S = 240.0
"""How long damond's Python may take to start under TCG (20-90 s seen)."""
HOT0_MIB, HOT1_MIB = 64, 256
TUNED = ("quotas/effective_bytes", "stats/sz_applied")
INTERVALS = "sample_us = 5000, aggr_us = 100000, update_us = 1000000"
DAMO_DIR = ""


def config() -> str:
    """The two contexts: the same goal, the same class of pages, opposite moves."""
    common = f"""mode = "daemon"
intervals = {{ {INTERVALS} }}
goal = {{ metric = "node_eligible_mem_bp", nid = 0, target_bp = {TARGET_BP} }}
controller = {{ lag_s = 5.0 }}
"""
    scheme = """access_pattern = { nr_accesses_min = 1, age_min = 0 }
quota = { max_bytes = 8388608, reset_interval_ms = 1000 }
"""
    return f"""{gs.service_header()}
[[contexts]]
name = "pull"
node = 1
{common}
[contexts.scheme]
action = "migrate_hot"
target_nid = 0
{scheme}
[[contexts]]
name = "push"
node = 0
{common}
[contexts.scheme]
action = "migrate_cold"
target_nid = 1
{scheme}"""


def damo(*args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=DAMO_DIR)
    code = "import sys; from damo.damo import main; sys.argv[0] = 'damo'; sys.exit(main())"
    return subprocess.run(
        [gs.PY, "-c", code, *args], capture_output=True, text=True, timeout=timeout_s, env=env
    )


def node_range(nid: int) -> tuple[int, int]:
    block = int(Path("/sys/devices/system/memory/block_size_bytes").read_text(), 16)
    ids = sorted(
        int(p.name[len("memory") :])
        for p in Path(f"/sys/devices/system/node/node{nid}").glob("memory[0-9]*")
    )
    return ids[0] * block, (ids[-1] + 1) * block


def truth_bp(pids: list[int]) -> int:
    """Node 0's share of the workloads' pages (numa_maps): the hot set's ground truth."""
    per_node: dict[int, int] = {}
    for pid in pids:
        for node, pages in gs.pages_by_node(pid).items():
            per_node[node] = per_node.get(node, 0) + pages
    return per_node.get(0, 0) * 10000 // max(1, sum(per_node.values()))


def damond_view() -> list[tuple[float, int]]:
    """(time, metric_bp) of the pull context's iterations: the goal's one shared view."""
    out = []
    for e in gs.log_events():
        if e.get("context") != "pull" or e.get("event") not in ("first iteration", "iteration"):
            continue
        if e.get("metric_bp"):  # 0: nothing eligible anywhere, no measurement
            stamp = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))
            out.append((stamp.timestamp(), int(e["metric_bp"])))
    return out


def summarize(series: list[tuple[float, int]], start_s: float) -> dict[str, Any]:
    """Time to settle (first reading within the band, from ``start_s``) and the
    median error and sigma over the steady window after it."""
    settled = next((t for t, v in series if abs(v - TARGET_BP) <= BAND_BP), None)
    if settled is None:
        return {"settle_s": None, "n": 0}
    steady = [v for t, v in series if settled <= t <= settled + STEADY_S + 5]
    window = [t for t, _ in series if settled <= t <= settled + STEADY_S + 5]
    return {
        "settle_s": round(settled - start_s, 1),
        "median_error_bp": int(statistics.median(steady)) - TARGET_BP,
        "sigma_bp": round(statistics.pstdev(steady), 1),
        "window_s": round(window[-1] - window[0], 1),
        "n": len(steady),
    }


class Sampler:
    """Samples the ground truth, migrations and a DAMON-side view every 2 s."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.mig0 = gs.migrated_pages()
        self.start = time.time()
        self.samples: list[dict[str, Any]] = []

    def sample(self, view_bp: int | None) -> None:
        self.samples.append(
            {
                "t": round(time.time() - self.start, 1),
                "truth_bp": truth_bp(self.pids),
                "view_bp": view_bp,
                "migrated_bytes": (gs.migrated_pages() - self.mig0) * mmap.PAGESIZE,
            }
        )

    def truth(self) -> list[tuple[float, int]]:
        return [(self.start + s["t"], s["truth_bp"]) for s in self.samples]


def steady_done(series: list[tuple[float, int]]) -> bool:
    settled = next((t for t, v in series if abs(v - TARGET_BP) <= BAND_BP), None)
    return settled is not None and series[-1][0] >= settled + STEADY_S


def run_damond(res: dict[str, Any], run_max_s: float) -> None:
    Path(gs.CONFIG).write_text(config())
    Path(gs.LOG).write_text("")
    hot0 = gs.workload(0, HOT0_MIB, hot=True)
    hot1 = gs.workload(1, HOT1_MIB, hot=True)
    sampler = Sampler([hot0.pid, hot1.pid])
    damond = gs.start_damond()
    view: list[tuple[float, int]] = []
    control = None  # damond's first measurement: times count from there
    deadline = sampler.start + STARTUP_S
    while time.time() < deadline and damond.poll() is None:
        time.sleep(2)
        view = damond_view()
        sampler.sample(view[-1][1] if view else None)
        if view and control is None:
            control = view[0][0]
            deadline = control + run_max_s
        if steady_done(view):
            break
    control = control or time.time()
    res["startup_s"] = round(control - sampler.start, 1)
    res["samples"] = sampler.samples
    res["view"] = [(round(t - sampler.start, 1), v) for t, v in view]
    res["view_summary"] = summarize(view, control)
    res["truth_summary"] = summarize(sampler.truth(), control)
    res["migrated_bytes"] = sampler.samples[-1]["migrated_bytes"] if sampler.samples else 0
    # damo reads damond's kdamonds while damond steers them (after the steady minute:
    # the reading's CPU would disturb it under TCG)
    res["tree_before"] = config_dump(gs.ADMIN)
    t0 = time.monotonic()
    attempts = 0
    while attempts < 3:  # a file read while damond commits is EBUSY: "read failed"
        attempts += 1
        r = damo("report", "damon", "--format", "json", "--raw")
        if r.returncode or "read failed" not in r.stdout:
            break
    res["report"] = {
        "rc": r.returncode,
        "stderr": r.stderr[-1500:],
        "json": json.loads(r.stdout) if r.returncode == 0 else None,
        "took_s": round(time.monotonic() - t0, 1),
        "attempts": attempts,
    }
    res["tree_after"] = config_dump(gs.ADMIN)
    res.update(damond_writes())
    res["warnings"] = [e["event"] for e in gs.log_events() if e.get("level") == "warning"]
    hot0.kill()
    hot1.kill()
    gs.stop_damond(damond, res)


def damo_start_args() -> list[str]:
    """damo's command line for the same goal: one paddr context over both nodes, a pull
    scheme (node 1's pages only) and a push scheme (node 0's only), each with the
    kernel's own node_eligible_mem_bp goal (node 1's share is 10000 minus node 0's),
    and two stat schemes that measure each node's eligible bytes as damond does."""
    (s0, e0), (s1, e1) = node_range(0), node_range(1)
    args = ["start", "--ops", "paddr", "--numa_node", "0", "1"]
    args += ["--monitoring_intervals", "5ms", "100ms", "1s"]
    args += ["--monitoring_nr_regions_range", "100", "1000"]
    for action, nid, goal_nid, goal_bp, (start, end) in (
        ("migrate_hot", 0, 0, TARGET_BP, (s0, e0)),
        ("migrate_cold", 1, 1, 10000 - TARGET_BP, (s1, e1)),
    ):
        args += ["--damos_scheme", "--damos_action", action, str(nid)]
        args += ["--damos_access_rate", "5%", "max", "--damos_age", "0", "max"]
        args += ["--damos_quota_interval", "100ms", "--damos_quota_space", "4MiB"]
        args += ["--damos_quota_goal", "node_eligible_mem_bp", str(goal_bp), str(goal_nid)]
        args += ["--damos_quota_goal_tuner", os.environ.get("KERNEL_TUNER", "consist")]
        # as damond does: the scheme leaves the pages already on its destination alone
        args += ["--damos_filter", "reject", "addr", str(start), str(end)]
    # the same measurement as damond's: a quota-less stat scheme per node (node 0, node 1)
    for start, end in ((s1, e1), (s0, e0)):
        args += ["--damos_scheme", "--damos_action", "stat"]
        args += ["--damos_access_rate", "5%", "max", "--damos_age", "0", "max"]
        args += ["--damos_filter", "reject", "addr", str(start), str(end)]
    return args


def volatile(path: str) -> bool:
    """Files a running kdamond changes by itself (statistics, the tuned quota, goals'
    measured values, the regions it tried); the rest is its configuration."""
    parts = ("/stats/", "/tried_regions/", "effective_bytes", "current_value")
    return any(p in path for p in parts)


def config_dump(root: Path) -> dict[str, str]:
    """The configuration files under ``root`` (volatile ones are not even read)."""
    return {
        str(p): gs.read(p)
        for p in sorted(root.rglob("*"))
        if not volatile(str(p)) and "/tried_regions" not in str(p) and p.is_file()
    }


def damond_writes() -> dict[str, Any]:
    """From damond's log: each context's kdamond, and the quotas it gave each one."""
    kdamonds: dict[str, int] = {}
    quotas: dict[str, set[int]] = {}
    acting: dict[str, int] = {}
    for e in gs.log_events():
        name = e.get("context")
        if e.get("event") == "kdamond on" and name:
            kdamonds[name] = int(e["kdamond"])
        if e.get("event") == "iteration" and name and e.get("quota_bytes") is not None:
            quotas.setdefault(name, set()).add(int(e["quota_bytes"]))
            acting[name] = acting.get(name, 0) + (int(e["quota_bytes"]) > 1)
    return {
        "kdamonds": kdamonds,
        "quotas": {k: sorted(v) for k, v in quotas.items()},
        "acting": acting,
    }


def run_kernel(res: dict[str, Any], run_max_s: float) -> None:
    hot0 = gs.workload(0, HOT0_MIB, hot=True)
    hot1 = gs.workload(1, HOT1_MIB, hot=True)
    sampler = Sampler([hot0.pid, hot1.pid])
    args = damo_start_args()
    res["damo_args"] = args
    r = damo(*args)
    res["start"] = {"rc": r.returncode, "stderr": r.stderr[-1500:], "stdout": r.stdout[-500:]}
    schemes = gs.KD0 / "contexts/0/schemes"
    if r.returncode == 0:
        # damo 3.4.3 writes a goal's nid only for node_mem_{used,free}_bp and the memcg
        # metrics, not for node_eligible_mem_bp (left at 0): set the push goal's node
        # as an operator would, and restart the kdamond with it (written online with
        # a commit, it did not change what the kernel's tuner did on 7.2.13)
        (gs.KD0 / "state").write_text("off")
        (schemes / "1/quotas/goals/0/nid").write_text("1")
        (gs.KD0 / "state").write_text("on")
    control = time.time()  # the kdamond runs: times count from here
    res["startup_s"] = round(control - sampler.start, 1)
    res["tree"] = config_dump(gs.KD0) if r.returncode == 0 else {}
    view: list[tuple[float, int]] = []
    tuned: list[dict[str, Any]] = []
    while r.returncode == 0 and time.time() - control < run_max_s:
        time.sleep(2)
        for command in ("effective_quotas", "stats", "tried_bytes"):
            (gs.KD0 / "state").write_text(f"update_schemes_{command}")
        node0, node1 = (int(gs.read(schemes / f"{s}/tried_regions/total_bytes")) for s in (2, 3))
        if node0 + node1:
            view.append((time.time(), node0 * 10000 // (node0 + node1)))
        sampler.sample(view[-1][1] if view else None)
        # each scheme's tuned quota and bytes moved: (pull, push)
        tuned.append({s: [gs.read(schemes / f"{s}/{f}") for f in TUNED] for s in ("0", "1")})
        if steady_done(view or sampler.truth()):
            break
    res["tuned"] = tuned
    res["samples"] = sampler.samples
    res["view"] = [(round(t - sampler.start, 1), v) for t, v in view]
    res["view_summary"] = summarize(view, control) if view else None
    res["truth_summary"] = summarize(sampler.truth(), control)
    res["migrated_bytes"] = sampler.samples[-1]["migrated_bytes"] if sampler.samples else 0
    hot0.kill()
    hot1.kill()


def refuse(res: dict[str, Any]) -> None:
    """damo's kdamond runs: damond must refuse without writing anything."""
    res["pid"] = gs.read(gs.KD0 / "pid")
    before = config_dump(gs.ADMIN)
    Path(gs.CONFIG).write_text(config())
    Path(gs.LOG).write_text("")
    proc = gs.start_damond()
    res["rc"] = proc.wait(timeout=180)
    res["stderr"] = Path(gs.LOG).read_text()[-1500:]
    after = config_dump(gs.ADMIN)
    res["changed"] = sorted(
        k for k in before.keys() | after.keys() if before.get(k) != after.get(k)
    )
    res["files_compared"] = len(before)
    res["pid_after"] = gs.read(gs.KD0 / "pid")
    res["state_after"] = gs.read(gs.KD0 / "state")
    r = damo("stop")
    res["stop_rc"] = r.returncode
    res["nr_kdamonds_after_stop"] = gs.read(gs.ADMIN / "kdamonds/nr_kdamonds")


def not_running(res: dict[str, Any]) -> None:
    raise RuntimeError("damo's kdamond is not running")


def main() -> int:
    global DAMO_DIR
    out = Path(sys.argv[1])
    DAMO_DIR = sys.argv[2]
    setattr(gs, "LOG", f"{out}.damond.log")  # noqa: B010 - the helpers read it
    run_max_s = float(os.environ.get("RUN_MAX_S", "140"))
    results: dict[str, Any] = {"release": os.uname().release}
    subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], check=False)
    # damo probes the kernel's features only while no kdamond runs; it caches them
    r = damo("report", "sysinfo")
    results["sysinfo_rc"] = r.returncode
    results["damo_version"] = damo("version").stdout.strip()
    parts = os.environ.get("PARTS", "damond,kernel,refuse").split(",")
    if "damond" in parts:
        gs.part(results, "damond", out, run_damond, run_max_s)
    if "kernel" in parts:
        gs.part(results, "kernel", out, run_kernel, run_max_s)
    if "refuse" in parts:  # beside damo's kdamond, which the kernel part left running
        running = gs.read(gs.KD0 / "state") == "on"
        gs.part(results, "refuse", out, refuse if running else not_running)
    out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
