"""damond against real kernels under QEMU: Debian's Linux 7.2 (sid) and 6.12 (trixie).

One guest boot per kernel runs every scenario (tests/vm/guest_scenario.py) and
writes a JSON result; the tests below assert on its parts. Each boot costs
about 20 s of Python start-up per damond process under TCG, so one boot per
kernel keeps the whole suite within a few minutes. Without qemu or a fetched
kernel the tests are skipped with a loud reason, and fail in CI.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import vmguest

pytestmark = pytest.mark.vm

ROOT = Path(__file__).resolve().parents[1]
GUEST_TIMEOUT_S = 420


@pytest.fixture(scope="module", params=vmguest.SUITES)
def guest(request: pytest.FixtureRequest) -> dict[str, Any]:
    suite: str = request.param
    vmguest.skip_or_fail("VM TESTS", suite, vmguest.missing_requirements(suite))
    out = ROOT / ".vm" / f"result-{suite}.json"
    out.parent.mkdir(exist_ok=True)
    out.unlink(missing_ok=True)
    script = f"{sys.executable} {ROOT / 'tests/vm/guest_scenario.py'} {out}\n"
    result = vmguest.run_in_guest(suite, ROOT, script, timeout_s=GUEST_TIMEOUT_S)
    print(f"\n[{suite}] kernel {result.kernel}: guest ran {result.wall_s:.0f} s, rc {result.rc}")
    assert out.exists(), f"no guest result:\n{result.out[-3000:]}\n{result.console[-3000:]}"
    data: dict[str, Any] = json.loads(out.read_text())
    data["suite"] = suite
    data["guest_wall_s"] = result.wall_s
    assert not result.timed_out, f"the guest ran out of time: {result.out[-3000:]}"
    return data


def part(guest: dict[str, Any], name: str) -> dict[str, Any]:
    res: dict[str, Any] = guest.get(name, {})
    assert res, f"part {name} did not run"
    assert "error" not in res, res["error"]
    return res


def stopped_cleanly(res: dict[str, Any]) -> None:
    assert res["damond_rc"] == 0, res.get("stderr_tail")
    assert res["nr_kdamonds_after_exit"] == "0"  # on_exit = "stop" turned them off and removed them


def hot_moved(res: dict[str, Any]) -> int:
    """Bytes of the node-1 hot workload that ended up on node 0."""
    pages: int = res["after"]["hot1"].get("0", 0) - res["before"]["hot1"].get("0", 0)
    return pages * 4096


def workload_share_bp(pages: dict[str, dict[str, int]], node: int) -> int:
    """Node ``node``'s share of both workloads' pages (from numa_maps), in bp."""
    total = sum(n for per_node in pages.values() for n in per_node.values())
    on_node = sum(per_node.get(str(node), 0) for per_node in pages.values())
    return on_node * 10000 // max(1, total)


def test_daemon_mode_pulls_hot_pages_to_the_target(guest: dict[str, Any]) -> None:
    res = part(guest, "daemon")
    moved = hot_moved(res) // 4096
    print(
        f"\n[{guest['suite']}] daemon mode: node 0 share {res['first_metric_bp']} -> "
        f"{res['median_last10_bp']} bp (median of the last 10; target 6000), within ±2 % after "
        f"{res['time_to_2pct_s']} s, {res['migrated_bytes'] / 2**20:.0f} MiB migrated, "
        f"hot pages moved node 1 -> 0: {moved * 4 / 1024:.0f} MiB"
    )
    assert moved * 4096 >= 16 << 20
    assert res["migrated_bytes"] >= 16 << 20
    assert workload_share_bp(res["before"], 0) < 3000  # the hot pages start mostly on node 1
    reached = res["time_to_2pct_s"]
    assert reached is not None, res["iterations"]
    # damond saw the low start before it reached the band; not necessarily in its very
    # first reading: under TCG a workload starved of CPU for an aggregation interval
    # looks cold to DAMON, and one such reading tells nothing about damond
    seen_before = [m for t, m in res["iterations"] if t < reached]
    assert seen_before and min(seen_before) < 5800, res["iterations"]
    # it stays near the target: the measurement is coarse (DAMON regions) and a pull
    # context cannot undo an overshoot, so the band is wider than the ±2 % first reached
    assert abs(res["median_last10_bp"] - 6000) <= 1200, res["iterations"]
    stopped_cleanly(guest["adopt_fault"])


def test_restart_readopts_running_kdamond(guest: dict[str, Any]) -> None:
    res = part(guest, "adopt_fault")
    assert res["state_after_kill"] == "on"
    assert res["adopted"] is not None
    assert res["pid_before"] == res["pid_after_kill"] == res["pid_after_restart"]


def test_bad_commit_is_recovered(guest: dict[str, Any]) -> None:
    res = part(guest, "adopt_fault")
    print(f"\n[{guest['suite']}] fault {res['fault']}: {res['failure_error']}")
    assert res["failure_logged"] and res["failure_error"]
    assert res["recovered"] and res["state_end"] == "on"
    if res["addr_unit_end"] is not None:
        assert res["addr_unit_end"] == "1"
    assert int(res["region0_end"][0]) < int(res["region0_end"][1])
    stopped_cleanly(res)


def test_kernel_mode_feeds_user_input(guest: dict[str, Any]) -> None:
    res = part(guest, "kernel")
    assert res["sysfs"]["target_metric"] == "user_input"
    fed = {s["goal_current"] for s in res["samples"]} - {"0", "6000"}
    print(
        f"\n[{guest['suite']}] kernel mode: {res['first_metric_bp']} -> {res['last_metric_bp']} "
        f"bp, within ±2 % after {res['time_to_2pct_s']} s, "
        f"{res['migrated_bytes'] / 2**20:.0f} MiB migrated"
    )
    assert fed, "damond never fed a measurement"
    assert hot_moved(res) >= 8 << 20
    stopped_cleanly(res)


def test_native_mode(guest: dict[str, Any]) -> None:
    res = guest["native"]
    if guest["suite"] == "trixie":  # 6.12 has no node_eligible_mem_bp: refused, nothing run
        assert res["damond_rc"] == 3
        assert "mode native needs" in res["stderr_tail"]
        assert res["nr_kdamonds_after_exit"] == "0"
        return
    res = part(guest, "native")
    sysfs = res["sysfs"]
    assert (sysfs["target_metric"], sysfs["goal_nid"], sysfs["goal_tuner"]) == (
        "node_eligible_mem_bp",
        "0",
        "temporal",
    )
    print(
        f"\n[{guest['suite']}] native mode: {res['first_metric_bp']} -> {res['last_metric_bp']} "
        f"bp, within ±2 % after {res['time_to_2pct_s']} s, "
        f"{res['migrated_bytes'] / 2**20:.0f} MiB migrated"
    )
    assert hot_moved(res) >= 8 << 20
    stopped_cleanly(res)


def test_refuses_foreign_kdamond_and_damon_stat(guest: dict[str, Any]) -> None:
    res = part(guest, "refuse")
    foreign = res["foreign"]
    assert foreign["rc"] == 3, foreign["stderr"]
    assert f"kdamond 0 (pid {res['foreign_pid']})" in foreign["stderr"]
    assert foreign["unchanged"]
    if guest["suite"] == "sid":  # DAMON_STAT exists from 6.17
        stat = res["damon_stat"]
        assert stat["rc"] == 3, stat["stderr"]
        assert "DAMON_STAT (damon_stat) holds DAMON exclusively" in stat["stderr"]
        assert stat["unchanged"]
