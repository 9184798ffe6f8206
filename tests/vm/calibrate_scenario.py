"""Runs INSIDE a QEMU guest: the calibration scenario of ``benchmarks/calibrate.py``.

The VM suite's daemon-mode scenario (tests/vm/guest_scenario.py: 64 MiB hot on
node 0, 256 MiB hot on node 1, one pull context towards 6000 bp on node 0, 8 MiB
per 1 s quota window) run longer, with the timings the simulator is compared on:
when the kdamond turned on, every migration counter reading, the kdamond's
sleeps (the sampling rate it achieves), how often the workloads really touch
their pages and how long they went without (the guest's speed and CPU starvation
under TCG). Standard library only.

usage (from the checkout): python -m tests.vm.calibrate_scenario <out.json> [run_s]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.vm import guest_scenario as gs

TARGET_BP = 6000
HOT = ((0, 64), (1, 256))
"""(node, MiB) of each hot workload."""
RATE_DIR = Path("/tmp/calibrate")
POLL_S = 0.2
STALL_S = 0.1
"""A gap between two passes longer than this (an aggregation) is a stall."""
STARTUP_S = 300
"""How long damond may take to start its kdamond (Python under TCG on a loaded host)."""


def workload(node: int, mib: int) -> subprocess.Popen[str]:
    """A hot buffer touched in full every pass, 20 ms apart, that writes how many passes
    it made and how long they took (the touch period sets the access rate DAMON sees)."""
    rate_file = RATE_DIR / f"hot{node}"
    code = f"""
import mmap, time
n = {mib} << 20
m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
ones = bytes([1]) * (n // 4096)
m[0:n:4096] = ones
print("ready", flush=True)
t0 = last = time.monotonic()
passes = 0
busy = stalled = 0.0
while True:
    a = time.monotonic()
    m[0:n:4096] = ones
    busy += time.monotonic() - a
    passes += 1
    if a - last > {STALL_S}:
        stalled += a - last
    last = a
    if passes % 25 == 0:
        with open("{rate_file}", "w") as f:
            f.write(f"{{passes}} {{time.monotonic() - t0}} {{busy}} {{stalled}}")
    time.sleep(0.02)
"""
    p = subprocess.Popen(
        ["numactl", f"--membind={node}", "nice", "-n", "-5", gs.PY, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None
    p.stdout.readline()
    return p


def touch_rate(node: int) -> dict[str, float] | None:
    """Workload ``node``'s mean time between passes, mean pass time, and the share of
    its time spent in gaps longer than an aggregation (starved of CPU: DAMON sees its
    pages cold for a whole aggregation)."""
    try:
        text = (RATE_DIR / f"hot{node}").read_text().split()
        passes, elapsed, busy, stalled = (float(x) for x in text)
    except (OSError, ValueError):
        return None
    return {
        "period_s": elapsed / passes,
        "pass_s": busy / passes,
        "passes": passes,
        "stalled_share": stalled / elapsed,
    }


def voluntary_switches(pid: str) -> int | None:
    """The kdamond's voluntary context switches: it sleeps once per sampling interval,
    so their rate is the samples it achieves per second."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    return None


def iterations(t_on: float) -> list[dict[str, Any]]:
    """damond's iterations: time since the kdamond turned on, the metric and the quota."""
    out: list[dict[str, Any]] = []
    for e in gs.log_events():
        if e.get("event") not in ("first iteration", "iteration"):
            continue
        ts = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
        out.append(
            {
                "t": round(ts - t_on, 2),
                "metric_bp": int(e.get("metric_bp") or 0),
                "quota_bytes": e.get("quota_bytes"),
                "esz": e.get("effective_quota_bytes"),
            }
        )
    return out


def calibrate(res: dict[str, Any], run_s: float) -> None:
    Path(gs.CONFIG).write_text(gs.config("daemon", TARGET_BP))
    Path(gs.LOG).write_text("")
    RATE_DIR.mkdir(exist_ok=True)
    loads = {node: workload(node, mib) for node, mib in HOT}
    res["before"] = {f"hot{n}": gs.pages_by_node(p.pid) for n, p in loads.items()}
    try:
        steer(res, run_s, loads)
    finally:
        for p in loads.values():
            p.kill()


def steer(res: dict[str, Any], run_s: float, loads: dict[int, subprocess.Popen[str]]) -> None:
    """damond from its start to ``run_s`` seconds after its kdamond turned on."""
    mig0 = gs.migrated_pages()
    started = time.time()
    damond = gs.start_damond()
    t_on = None
    while time.time() - started < STARTUP_S and damond.poll() is None:
        if (gs.KD0 / "state").exists() and gs.read(gs.KD0 / "state") == "on":
            t_on = time.time()
            break
        time.sleep(0.05)
    if t_on is None:
        res["error"] = "the kdamond did not turn on"
        res["log_tail"] = Path(gs.LOG).read_text()[-2000:]
        gs.stop_damond(damond, res)
        return
    res["startup_s"] = round(t_on - started, 2)
    kdamond = gs.read(gs.KD0 / "pid")
    moves: list[tuple[float, int]] = []
    sleeps: list[tuple[float, int]] = []
    last = 0.0
    while (now := time.time()) - t_on < run_s and damond.poll() is None:
        moves.append((round(now - t_on, 3), gs.migrated_pages() - mig0))
        if now - last >= 1.0:
            n = voluntary_switches(kdamond)
            if n is not None:
                sleeps.append((round(now - t_on, 3), n))
            last = now
        time.sleep(POLL_S)
    res["moves_pages"] = moves
    res["kdamond_sleeps"] = sleeps
    res["touch"] = {f"hot{n}": touch_rate(n) for n in loads}
    res["after"] = {f"hot{n}": gs.pages_by_node(p.pid) for n, p in loads.items()}
    res["iterations"] = iterations(t_on)
    gs.stop_damond(damond, res)


def main() -> int:
    out = Path(sys.argv[1])
    run_s = float(sys.argv[2]) if len(sys.argv) > 2 else 120.0
    gs.LOG = f"{out}.damond.log"
    res: dict[str, Any] = {"kernel": os.uname().release, "run_s": run_s, "target_bp": TARGET_BP}
    res["config"] = gs.config("daemon", TARGET_BP)
    res["hot_mib"] = {f"node{n}": mib for n, mib in HOT}
    t0 = time.monotonic()
    try:
        calibrate(res, run_s)
    except Exception as exc:
        res["error"] = f"{type(exc).__name__}: {exc}"
    res["part_s"] = round(time.monotonic() - t0, 1)
    out.write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k not in ("moves_pages", "config")})[:3000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
