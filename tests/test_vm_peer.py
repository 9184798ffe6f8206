"""damond's two contexts on one goal, and damo as the peer, on Debian's Linux 7.2 under QEMU.

One guest boot (tests/vm/two_context_scenario.py, driven by benchmarks/peer.py)
runs: damond with a pull and a push context steering ``node_eligible_mem_bp`` of
node 0 to 6000 bp; ``damo report damon`` reading damond's kdamonds while it
steers; the same workload under the kernel's own quota-goal tuning started by
damo; and damond refusing to start beside damo's kdamond. damo comes from PyPI
(pip ``--target`` into the VM cache, see ``benchmarks/peer.py``). Without qemu or
the 7.2 kernel the tests are skipped with a loud reason, and fail in CI.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests import vmguest

pytestmark = pytest.mark.vm

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "/sys/kernel/mm/damon/admin/kdamonds"
TARGET_BP = 6000


def peer_module() -> ModuleType:
    """``benchmarks/peer.py`` (a script, not a package)."""
    spec = importlib.util.spec_from_file_location("peer_bench", ROOT / "benchmarks/peer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["peer_bench"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def guest() -> dict[str, Any]:
    vmguest.skip_or_fail("VM TESTS", "sid", vmguest.missing_requirements("sid"))
    peer = peer_module()
    data: dict[str, Any] = peer.run()
    info = data["guest"]
    print(f"\n[sid] kernel {info['kernel']}: guest ran {info['wall_s']} s, rc {info['rc']}")
    print(peer.table(data))
    assert not info["timed_out"], f"the guest ran out of time: {info['out_tail']}"
    return data


def part(guest: dict[str, Any], name: str) -> dict[str, Any]:
    res: dict[str, Any] = guest.get(name, {})
    assert res, f"part {name} did not run: {guest['guest']['out_tail']}"
    assert "error" not in res, res["error"]
    return res


def test_push_and_pull_contexts_hold_the_goal(guest: dict[str, Any]) -> None:
    res = part(guest, "damond")
    view, pages = res["view_summary"], res["truth_summary"]
    print(
        f"\n[sid] two contexts: settled (within ±300 bp) after {view['settle_s']} s; over "
        f"{view['window_s']} s after it: median error {view['median_error_bp']:+d} bp, sigma "
        f"{view['sigma_bp']} bp (the workload's own pages: {pages.get('median_error_bp')} bp, "
        f"sigma {pages.get('sigma_bp')} bp); {res['migrated_bytes'] / 2**20:.0f} MiB migrated; "
        f"quotas granted: pull {res['acting']['pull']}, push {res['acting']['push']} iterations"
    )
    assert view["settle_s"] is not None, res["view"]
    assert view["window_s"] >= 60, res["view"]
    assert abs(view["median_error_bp"]) <= 300, res["view"]
    # The median is the reading's (the goal counts every hot page of the guest; the
    # workload's pages sat 67-278 bp above the target in six runs). The sigma held to
    # 200 bp is the pages' (where the hot set is, what the moves change): DAMON's
    # reading under TCG also jumps by itself, +700-800 bp for 3-5 s and back (26 MiB
    # in a second, three times the quota: no migration made it), so its sigma
    # (114-306 bp in those runs) is reported only.
    load = os.getloadavg()[0]
    detail = f"host load {load:.1f}: pages {res['samples']}"
    assert pages["settle_s"] is not None, detail
    assert pages["sigma_bp"] <= 200, detail
    assert res["acting"]["pull"] > 0  # the pull context brought the hot pages in
    assert res["damond_rc"] == 0, res.get("stderr_tail")
    assert res["nr_kdamonds_after_exit"] == "0"


def _number(text: str) -> int:
    """damo's raw numbers: ``5000``, ``1 samples``, ``500.000000``."""
    token = text.split()[0]
    return int(token) if token.isdigit() else int(float(token))


def _damo_fields(kdamond: dict[str, Any]) -> dict[str, tuple[str, int | str]]:
    """What damo read of one kdamond, keyed by the sysfs file it comes from (relative to
    the kdamond's directory), with the value as damo reports it, in sysfs units."""
    out: dict[str, tuple[str, int | str]] = {"state": ("state", kdamond["state"])}
    for c, ctx in enumerate(kdamond["contexts"]):
        base = f"contexts/{c}"
        out[f"{base}/operations"] = ("ops", ctx["ops"])
        for key, name in (("sample_us", "sample_us"), ("aggr_us", "aggr_us")):
            out[f"{base}/monitoring_attrs/intervals/{name}"] = (key, _number(ctx["intervals"][key]))
        out[f"{base}/monitoring_attrs/intervals/update_us"] = (
            "ops_update_us",
            _number(ctx["intervals"]["ops_update_us"]),
        )
        for end in ("min", "max"):
            out[f"{base}/monitoring_attrs/nr_regions/{end}"] = (
                end,
                _number(ctx["nr_regions"][end]),
            )
        for s, scheme in enumerate(ctx["schemes"]):
            sb = f"{base}/schemes/{s}"
            out[f"{sb}/action"] = ("action", scheme["action"])
            if "target_nid" in scheme:
                out[f"{sb}/target_nid"] = ("target_nid", _number(scheme["target_nid"]))
            pattern = scheme["access_pattern"]
            for key, name in (("sz_bytes", "sz"), ("nr_accesses", "nr_accesses"), ("age", "age")):
                for end in ("min", "max"):
                    out[f"{sb}/access_pattern/{name}/{end}"] = (key, _number(pattern[key][end]))
            quotas = scheme["quotas"]
            out[f"{sb}/quotas/bytes"] = ("sz_bytes", _number(quotas["sz_bytes"]))
            out[f"{sb}/quotas/ms"] = ("time_ms", _number(quotas["time_ms"]) // 10**6)
            out[f"{sb}/quotas/reset_interval_ms"] = (
                "reset_interval_ms",
                _number(quotas["reset_interval_ms"]) // 10**6,
            )
            out[f"{sb}/quotas/goal_tuner"] = ("goal_tuner", str(quotas["goal_tuner"]).strip())
            for key in ("sz_permil", "nr_accesses_permil", "age_permil"):
                out[f"{sb}/quotas/weights/{key}"] = (key, _number(quotas["weights"][key]))
            out[f"{sb}/quotas/goals/nr_goals"] = ("goals", len(quotas["goals"]))
            for g, goal in enumerate(quotas["goals"]):
                out[f"{sb}/quotas/goals/{g}/target_metric"] = ("metric", goal["metric"])
                out[f"{sb}/quotas/goals/{g}/target_value"] = (
                    "target_value",
                    _number(goal["target_value"]),
                )
                if goal.get("nid") is not None:
                    out[f"{sb}/quotas/goals/{g}/nid"] = ("nid", _number(goal["nid"]))
            out[f"{sb}/core_filters/nr_filters"] = ("filters", len(scheme["filters"]))
            for f, filt in enumerate(scheme["filters"]):
                fb = f"{sb}/core_filters/{f}"
                out[f"{fb}/type"] = ("filter_type", filt["filter_type"])
                out[f"{fb}/allow"] = ("allow", "Y" if filt["allow"] else "N")
                out[f"{fb}/matching"] = ("matching", "Y" if filt["matching"] else "N")
                if filt["filter_type"] == "addr":
                    out[f"{fb}/addr_start"] = ("start", _number(filt["address_range"]["start"]))
                    out[f"{fb}/addr_end"] = ("end", _number(filt["address_range"]["end"]))
    return out


def test_damo_reads_damonds_kdamonds(guest: dict[str, Any]) -> None:
    """damo, the ecosystem's own client, reads back the schemes, quotas and goals damond
    wrote: every field it shows equals the sysfs file damond wrote, read just before or
    just after damo; the working scheme's size quota, which damond sets every second
    while damo reads for many seconds under TCG, is one that damond gave it."""
    res = part(guest, "damond")
    report = res["report"]
    assert report["rc"] == 0, report["stderr"]
    before, after = res["tree_before"], res["tree_after"]
    shown = report["json"]
    failed = [k["pid"] for k in shown if "read failed" in str(k["pid"])]
    assert not failed, f"damo's reads failed in {report['attempts']} attempts: {failed}"
    assert len(shown) == int(before[f"{ADMIN}/nr_kdamonds"])
    assert set(res["kdamonds"]) == {"pull", "push"}
    compared = 0
    for name, index in sorted(res["kdamonds"].items()):
        assert shown[index]["pid"] == before[f"{ADMIN}/{index}/pid"]
        granted = {str(q) for q in res["quotas"][name]} | {"1"}
        for rel, (key, value) in _damo_fields(shown[index]).items():
            path = f"{ADMIN}/{index}/{rel}"
            assert path in before, f"damo shows {key} for {rel}, which damond's tree lacks"
            written = {before[path], after.get(path, before[path])}
            if rel == "contexts/0/schemes/0/quotas/bytes":
                written |= granted
            want = {int(v) if isinstance(value, int) else v for v in written}
            assert value in want, f"{name}: {rel}: damo shows {value}, sysfs {written}"
            compared += 1
        actions = [s["action"] for s in shown[index]["contexts"][0]["schemes"]]
        assert actions[0] == {"pull": "migrate_hot", "push": "migrate_cold"}[name]
        assert set(actions[1:]) == {"stat"}  # damond's measurement, one per node
    print(
        f"\n[sid] damo {guest['damo_version']}: {compared} fields of 2 kdamonds agree "
        f"(attempts: {report['attempts']}, {report['took_s']} s)"
    )


def test_side_by_side_with_the_kernel_tuner(guest: dict[str, Any]) -> None:
    res = part(guest, "kernel")
    assert res["start"]["rc"] == 0, res["start"]["stderr"]
    tree = res["tree"]
    goals = {
        (tree[f"{p}/target_metric"], tree[f"{p}/nid"], tree[f"{p}/target_value"])
        for p in (f"{ADMIN}/0/contexts/0/schemes/{s}/quotas/goals/0" for s in (0, 1))
    }
    assert goals == {
        ("node_eligible_mem_bp", "0", str(TARGET_BP)),
        ("node_eligible_mem_bp", "1", str(10000 - TARGET_BP)),
    }
    assert res["samples"] and res["migrated_bytes"] > 0


def test_refuses_beside_damos_kdamond(guest: dict[str, Any]) -> None:
    res = part(guest, "refuse")
    assert res["rc"] == 3, res["stderr"]
    assert f"kdamond 0 (pid {res['pid']})" in res["stderr"]
    assert "damond wrote nothing" in res["stderr"]
    assert res["changed"] == [], res["changed"]
    assert (res["pid_after"], res["state_after"]) == (res["pid"], "on")
    assert res["stop_rc"] == 0
