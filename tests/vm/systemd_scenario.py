"""Runs INSIDE a QEMU guest whose PID 1 is systemd (tests/test_vm_systemd.py).

Installs ``systemd/damond.service`` as shipped, with a drop-in that points
``ExecStart=`` at a venv made from Debian's Python and at a config under /run (and
gives TCG's slow start-up more time), and drives it with systemctl: start (READY=1),
hot pages moved under the unit's hardening, reload, a hung context that stops the
watchdog pings, stop, and a bad config that must not be restarted. Standard library
only; writes one JSON result and prints the unit's journal at the end.

usage (from the checkout): python -m tests.vm.systemd_scenario <out.json> <checkout> <venv>
"""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.vm import guest_scenario as gs

T = TypeVar("T")

UNIT = "damond.service"
RUN_UNITS = Path("/run/systemd/system")
CONF_DIR = Path("/run/damond-vm")
CONFIG = CONF_DIR / "damond.toml"
FIFO = CONF_DIR / "hang.fifo"
STATE_DIR = "/var/lib/damond"  # the unit's StateDirectory=
HIDDEN_BY_UNIT = ("/root", "/home", "/run/user")  # ProtectHome=yes
PRIVATE_IN_UNIT = ("/tmp", "/var/tmp")  # PrivateTmp=yes
TARGET_BP = 6000
RELOADED_TARGET_BP = 4000
BAD_TARGET_BP = 20000  # out of range: damond exits 2
TCG_START_TIMEOUT = "TimeoutStartSec=300s"
STUCK_EVENT = "context loops stuck; watchdog pings withheld so systemd restarts damond"
PROPS = ("ActiveState", "SubState", "Result", "MainPID", "NRestarts", "ExecMainStatus")


def config(target_bp: int) -> str:
    """The VM suite's daemon-mode config, with the unit's state dir and less logging
    (journald's share of the guest's CPU counts under TCG)."""
    text = gs.config("daemon", target_bp)
    for old, new in (
        (f'state_dir = "{gs.STATE_DIR}"', f'state_dir = "{STATE_DIR}"'),
        ('log_level = "debug"', 'log_level = "info"'),
    ):
        assert old in text
        text = text.replace(old, new)
    return text


def run(*args: str, timeout_s: float = 150) -> dict[str, Any]:
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, check=False)
    return {"rc": r.returncode, "out": (r.stdout + r.stderr)[-3000:]}


def show(*props: str) -> dict[str, str]:
    names = props or PROPS
    out = run("systemctl", "show", UNIT, "-p", ",".join(names))["out"]
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def journal() -> list[dict[str, Any]]:
    """The unit's journal: damond's JSON events, and systemd's own lines as ``message``."""
    r = subprocess.run(
        ["journalctl", "-u", UNIT, "-o", "cat", "--no-pager"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    events: list[dict[str, Any]] = []
    for line in r.stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        events.append(event if isinstance(event, dict) else {"message": line})
    return events


def wait_for(check: Callable[[], T | None], timeout_s: float, step_s: float = 0.5) -> T | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step_s)
    return None


def wait_event(name: str, timeout_s: float, after: int = 0, **fields: Any) -> dict[str, Any] | None:
    def find() -> dict[str, Any] | None:
        for e in journal()[after:]:
            if e.get("event") == name and all(e.get(k) == v for k, v in fields.items()):
                return e
        return None

    return wait_for(find, timeout_s, 2.0)


def kdamond_states() -> dict[str, str]:
    kdamonds = gs.ADMIN / "kdamonds"
    return {p.name: gs.read(p / "state") for p in kdamonds.iterdir() if p.name.isdigit()}


def kdamond_threads() -> list[str]:
    names = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            name = comm.read_text().strip()
        except OSError:
            continue
        if name.startswith("kdamond"):
            names.append(name)
    return sorted(names)


def sandbox(pid: str) -> dict[str, Any]:
    """What the kernel says about damond's process: capabilities, seccomp, mounts."""
    status = dict(
        line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    mounts = {}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] in ("/sys", "/sys/kernel/mm/damon"):
            mounts[fields[4]] = fields[5].split(",")[0]
    return {
        "CapEff": status["CapEff"].strip(),
        "CapBnd": status["CapBnd"].strip(),
        "NoNewPrivs": status["NoNewPrivs"].strip(),
        "Seccomp": status["Seccomp"].strip(),
        "mounts": mounts,
    }


def install(res: dict[str, Any], checkout: str, venv: str) -> None:
    """The shipped unit, unchanged, and a drop-in that replaces ExecStart= and, for TCG
    only, TimeoutStartSec=: damond starts in about a second on a real host, but in 35-80 s
    here (Python runs 15-40 times slower), too close to the unit's 90 s."""
    if checkout.startswith(HIDDEN_BY_UNIT):
        raise RuntimeError(f"the checkout {checkout} lies where ProtectHome=yes hides it")
    RUN_UNITS.mkdir(parents=True, exist_ok=True)
    (RUN_UNITS / UNIT).write_text(Path(checkout, "systemd", UNIT).read_text())
    dropin = [
        "[Service]",
        "ExecStart=",
        f"ExecStart={venv}/bin/damond run --config {CONFIG}",
        TCG_START_TIMEOUT,
    ]
    if checkout.startswith(PRIVATE_IN_UNIT):  # PrivateTmp=yes would hide the venv
        dropin.append(f"BindReadOnlyPaths={checkout}")
    (RUN_UNITS / f"{UNIT}.d").mkdir(exist_ok=True)
    (RUN_UNITS / f"{UNIT}.d" / "vm.conf").write_text("\n".join(dropin) + "\n")
    CONF_DIR.mkdir(exist_ok=True)
    CONFIG.write_text(config(TARGET_BP))
    res["daemon_reload"] = run("systemctl", "daemon-reload")
    res["dropin"] = dropin
    res["unit"] = show("ExecStart", "Type", "NotifyAccess", "FragmentPath")


def start(res: dict[str, Any]) -> None:
    """``systemctl start`` returns once damond sent READY=1. Nothing else runs meanwhile:
    a hot workload ahead of damond in the scheduler doubles its start-up under TCG."""
    res["kdamonds_before"] = kdamond_states()
    t0 = time.monotonic()
    res["start"] = run("systemctl", "start", UNIT)
    res["start_s"] = round(time.monotonic() - t0, 1)
    res["show"] = show(*PROPS, "StatusText", "WatchdogUSec")
    res["status"] = run("systemctl", "status", UNIT, "--no-pager", "-n", "0")["out"]
    res["ready_event"] = wait_event("ready", 5)
    if res["show"]["MainPID"] != "0":
        res["sandbox"] = sandbox(res["show"]["MainPID"])
    res["kdamonds"] = kdamond_states()


def migrate(res: dict[str, Any]) -> None:
    """Hot memory mostly on node 1: damond pulls it until node 0 holds TARGET_BP of it."""
    workloads = {"hot0": gs.workload(0, 64, hot=True), "hot1": gs.workload(1, 256, hot=True)}
    res["before"] = {k: gs.pages_by_node(p.pid) for k, p in workloads.items()}
    mig0 = gs.migrated_pages()
    samples = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 90:
        time.sleep(2)
        hot1 = gs.pages_by_node(workloads["hot1"].pid)
        samples.append({"t": round(time.monotonic() - t0, 1), "hot1": hot1})
        if (hot1.get(0, 0) - res["before"]["hot1"].get(0, 0)) * mmap.PAGESIZE >= 16 << 20:
            break
    res["samples"] = samples
    res["after"] = {k: gs.pages_by_node(p.pid) for k, p in workloads.items()}
    res["migrated_bytes"] = (gs.migrated_pages() - mig0) * mmap.PAGESIZE
    res["show"] = show(*PROPS, "StatusText")
    for p in workloads.values():
        p.kill()


def reload(res: dict[str, Any]) -> None:
    mark = len(journal())
    res["pid_before"] = show("MainPID")["MainPID"]
    CONFIG.write_text(config(RELOADED_TARGET_BP))
    res["reload"] = run("systemctl", "reload", UNIT)
    res["reconfigured"] = wait_event("context reconfigured", 60, mark, target_bp=RELOADED_TARGET_BP)
    res["reloaded"] = wait_event("configuration reloaded", 10, mark)
    res["show"] = show(*PROPS, "StatusText")


def hang(res: dict[str, Any]) -> None:
    """A FIFO over a file the context reads each tick: the read blocks, the loop stops."""
    running = [k for k, state in kdamond_states().items() if state == "on"]
    assert running, kdamond_states()
    stats = gs.ADMIN / f"kdamonds/{running[0]}/contexts/0/schemes/0/stats/sz_applied"
    before = show()
    res["before"] = before
    mark = len(journal())
    os.mkfifo(FIFO)
    res["mount"] = run("mount", "--bind", str(FIFO), str(stats))
    res["fifo_in_service"] = str(stats) in Path(f"/proc/{before['MainPID']}/mountinfo").read_text()
    t0 = time.monotonic()
    killed = wait_for(lambda: show()["MainPID"] != before["MainPID"], 150)
    res["killed_after_s"] = round(time.monotonic() - t0, 1) if killed else None
    res["umount"] = run("umount", str(stats))
    res["after_kill"] = show()
    res["stuck_event"] = wait_event(STUCK_EVENT, 1, mark)

    def restarted() -> dict[str, str] | None:
        now = show()
        fresh = now["MainPID"] not in ("0", before["MainPID"])
        return now if fresh and now["ActiveState"] == "active" else None

    res["restarted"] = wait_for(restarted, 240)
    res["restarted_after_s"] = round(time.monotonic() - t0, 1)
    res["watchdog_lines"] = [
        e["message"] for e in journal()[mark:] if "atchdog" in e.get("message", "")
    ]
    res["readopted"] = wait_event("re-adopted kdamond", 5, mark)


def stop(res: dict[str, Any]) -> None:
    res["kdamonds_before"] = kdamond_states()
    res["threads_before"] = kdamond_threads()
    t0 = time.monotonic()
    res["stop"] = run("systemctl", "stop", UNIT)
    res["stop_s"] = round(time.monotonic() - t0, 1)
    res["show"] = show()
    res["nr_kdamonds"] = gs.read(gs.ADMIN / "kdamonds/nr_kdamonds")
    res["kdamonds_after"] = kdamond_states()
    res["threads_after"] = kdamond_threads()


def bad_config(res: dict[str, Any]) -> None:
    CONFIG.write_text(
        config(TARGET_BP).replace(f"target_bp = {TARGET_BP}", f"target_bp = {BAD_TARGET_BP}")
    )
    res["start"] = run("systemctl", "start", UNIT)
    res["right_after"] = show()
    time.sleep(8)  # RestartSec=5s and then some: a restart would have happened by now
    res["later"] = show()
    res["journal_tail"] = [e.get("message") or e.get("event") for e in journal()[-8:]]


def main() -> int:
    out = Path(sys.argv[1])
    checkout, venv = sys.argv[2], sys.argv[3]
    results: dict[str, Any] = {"kernel": os.uname().release}
    for name, fn, *args in (
        ("install", install, checkout, venv),
        ("start", start),
        ("migrate", migrate),
        ("reload", reload),
        ("hang", hang),
        ("stop", stop),
        ("bad_config", bad_config),
    ):
        gs.part(results, name, out, fn, *args)
    sys.stdout.flush()
    subprocess.run(["journalctl", "-u", UNIT, "-o", "short-monotonic", "--no-pager"], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
