"""damond's unit under a real systemd: Debian's Linux 7.2 under QEMU, systemd as PID 1.

``systemd-analyze`` checks the unit's text (tests/test_systemd_unit.py); this runs it.
The guest boots the host's own systemd (tests/vm/mkinitramfs.sh, ``vmboot=systemd``),
installs ``systemd/damond.service`` as shipped with a drop-in that replaces only
``ExecStart=`` (a venv from Debian's /usr/bin/python3, made by tests/vm/system-venv.sh)
and ``TimeoutStartSec=`` (Python under TCG starts in a minute, not a second),
and drives it with systemctl (tests/vm/systemd_scenario.py). One boot runs every step,
5-6 minutes under TCG, most of it Python start-up: three damond starts and the
watchdog's 30 s. The guest's output and the unit's journal go to .vm/systemd-guest.log.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import vmguest

pytestmark = pytest.mark.vm

ROOT = Path(__file__).resolve().parents[1]
SUITE = "sid"
GUEST_TIMEOUT_S = 900
GUEST_LOG = ROOT / ".vm" / "systemd-guest.log"
SYSTEM_VENV = ROOT / ".vm" / "system-venv"
MiB = 1 << 20


def stale_initramfs(suite: str) -> str | None:
    """The cached initramfs predates tests/vm/mkinitramfs.sh (no systemd boot in it)."""
    kdir = vmguest.kernel_dir(suite)
    assert kdir is not None
    script = (ROOT / "tests/vm/mkinitramfs.sh").read_bytes()
    stamp = hashlib.sha256(script).hexdigest()[:16]
    built = kdir / "initrd.stamp"
    if not built.exists() or built.read_text().strip() != stamp:
        return f"its initramfs predates mkinitramfs.sh (run tests/vm/fetch-kernel.sh {suite})"
    return None


def not_runnable() -> str | None:
    why = vmguest.missing_requirements(SUITE) or stale_initramfs(SUITE)
    if why is None and not Path("/usr/bin/python3").exists():
        why = "no /usr/bin/python3 (Debian's python3 and python3-venv) for the unit's venv"
    return why


@pytest.fixture(scope="module")
def guest() -> dict[str, Any]:
    vmguest.skip_or_fail("VM SYSTEMD TESTS", SUITE, not_runnable())
    venv = subprocess.run(
        [ROOT / "tests/vm/system-venv.sh", ROOT, SYSTEM_VENV],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert venv.returncode == 0, f"cannot build {SYSTEM_VENV}:\n{venv.stdout}{venv.stderr}"
    out = ROOT / ".vm" / "result-systemd.json"
    out.unlink(missing_ok=True)
    script = f"{sys.executable} -m tests.vm.systemd_scenario {out} {ROOT} {SYSTEM_VENV}\n"
    result = vmguest.run_in_guest(
        SUITE,
        ROOT,
        script,
        timeout_s=GUEST_TIMEOUT_S,
        append="damon_stat.enabled=N vmboot=systemd systemd.show_status=error",
    )
    GUEST_LOG.write_text(f"{result.out}\n=== serial console\n{result.console}")
    print(f"\n[{SUITE}] kernel {result.kernel}, systemd as PID 1: guest ran {result.wall_s:.0f} s")
    tail = f"{result.out[-4000:]}\n(the whole guest log: {GUEST_LOG})"
    assert out.exists(), f"no guest result:\n{tail}\n{result.console[-2000:]}"
    assert not result.timed_out, f"the guest ran out of time:\n{tail}"
    data: dict[str, Any] = json.loads(out.read_text())
    data["log_tail"] = tail
    return data


def part(guest: dict[str, Any], name: str) -> dict[str, Any]:
    res: dict[str, Any] = guest.get(name, {})
    assert res, f"part {name} did not run\n{guest['log_tail']}"
    assert "error" not in res, f"{res['error']}\n{guest['log_tail']}"
    return res


def test_start_reaches_active_running_through_ready(guest: dict[str, Any]) -> None:
    dropin = part(guest, "install")["dropin"]
    # the hardening is as shipped: the drop-in sets only where damond is and a TCG timeout
    assert {line.partition("=")[0] for line in dropin} <= {
        "[Service]",
        "ExecStart",
        "TimeoutStartSec",
        "BindReadOnlyPaths",  # only if the checkout lies under /tmp (PrivateTmp=yes)
    }, dropin
    res = part(guest, "start")
    print(f"\nsystemctl start returned after {res['start_s']} s: {res['show']['StatusText']}")
    assert res["start"]["rc"] == 0, res
    assert (res["show"]["ActiveState"], res["show"]["SubState"]) == ("active", "running"), res
    assert "Active: active (running)" in res["status"], res["status"]
    assert res["ready_event"] is not None, guest["log_tail"]  # damond sent READY=1
    assert res["show"]["StatusText"].startswith("1/1 contexts up"), res["show"]
    assert res["show"]["WatchdogUSec"] == "30s", res["show"]
    assert res["show"]["NRestarts"] == "0", res["show"]


def test_kdamonds_move_hot_pages_under_the_hardening(guest: dict[str, Any]) -> None:
    res = part(guest, "start")
    # the unit's sandbox as the kernel applies it to damond's process
    assert res["sandbox"] == {
        "CapEff": "0000000000000000",
        "CapBnd": "0000000000000000",
        "NoNewPrivs": "1",
        "Seccomp": "2",  # SystemCallFilter= is a seccomp filter
        "mounts": {"/sys": "ro", "/sys/kernel/mm/damon": "rw"},
    }, res["sandbox"]
    assert "on" in res["kdamonds"].values(), res["kdamonds"]
    moved = part(guest, "migrate")
    pages = moved["after"]["hot1"].get("0", 0) - moved["before"]["hot1"].get("0", 0)
    print(
        f"\nhot pages moved node 1 -> 0: {pages * 4096 / MiB:.0f} MiB in "
        f"{moved['part_s']} s; {moved['show']['StatusText']}"
    )
    assert pages * 4096 >= 16 * MiB, moved["samples"]
    assert moved["migrated_bytes"] >= 16 * MiB, moved
    assert moved["show"]["MainPID"] == res["show"]["MainPID"], moved["show"]


def test_reload_applies_a_changed_target(guest: dict[str, Any]) -> None:
    res = part(guest, "reload")
    assert res["reload"]["rc"] == 0, res["reload"]
    assert res["reconfigured"] is not None, guest["log_tail"]
    assert res["reconfigured"]["target_bp"] == 4000
    assert res["reloaded"] is not None and res["reloaded"]["changed"] == ["pull"], res
    assert res["show"]["MainPID"] == res["pid_before"], res["show"]  # same process
    assert res["show"]["ActiveState"] == "active", res["show"]


def test_hung_context_stops_the_watchdog_and_systemd_restarts(guest: dict[str, Any]) -> None:
    res = part(guest, "hang")
    print(
        f"\nhung context: killed by the watchdog after {res['killed_after_s']} s, "
        f"active again after {res['restarted_after_s']} s"
    )
    assert res["mount"]["rc"] == 0, res["mount"]
    assert res["fifo_in_service"], "the FIFO did not reach damond's mount namespace"
    assert res["stuck_event"] is not None, guest["log_tail"]
    assert res["stuck_event"]["contexts"] == ["pull"]
    assert any("Watchdog timeout" in line for line in res["watchdog_lines"]), res
    assert res["after_kill"]["Result"] == "watchdog", res["after_kill"]
    restarted = res["restarted"]
    assert restarted is not None, guest["log_tail"]
    assert int(restarted["NRestarts"]) == int(res["before"]["NRestarts"]) + 1, restarted
    assert restarted["MainPID"] not in ("0", res["before"]["MainPID"]), restarted
    assert res["readopted"] is not None, guest["log_tail"]  # took over the running kdamond


def test_stop_turns_the_kdamonds_off(guest: dict[str, Any]) -> None:
    res = part(guest, "stop")
    assert "on" in res["kdamonds_before"].values() and res["threads_before"], res
    assert res["stop"]["rc"] == 0, res["stop"]
    assert (res["show"]["ActiveState"], res["show"]["Result"]) == ("inactive", "success")
    # on_exit = "stop": every kdamond off, then removed; no kdamond thread is left
    assert all(state == "off" for state in res["kdamonds_after"].values()), res
    assert res["nr_kdamonds"] == "0", res
    assert res["threads_after"] == [], res


def test_bad_config_exits_2_and_is_not_restarted(guest: dict[str, Any]) -> None:
    res = part(guest, "bad_config")
    assert res["start"]["rc"] != 0, res["start"]
    assert any(
        "target_bp: must be between 0 and 10000" in str(line) for line in res["journal_tail"]
    )
    for when in ("right_after", "later"):  # later: RestartSec=5s and more have passed
        show = res[when]
        assert (show["ActiveState"], show["Result"], show["ExecMainStatus"]) == (
            "failed",
            "exit-code",
            "2",
        ), show
        assert show["MainPID"] == "0", show
    assert res["later"]["NRestarts"] == res["right_after"]["NRestarts"] == "0", res
