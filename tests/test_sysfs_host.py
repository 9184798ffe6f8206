"""``damond check`` against the development host's real DAMON tree, read-only.

The host's kdamond belongs to the machine's owner. The test reads the tree only
inside a private mount namespace where it is bind-mounted read-only, so no bug
can write to it, and asserts that damond refuses (exit 3) naming the foreign
kdamond and that the tree reads the same before and after. Whether a kdamond
runs is decided from ``/proc/*/comm``, without touching the DAMON tree.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ADMIN = "/sys/kernel/mm/damon/admin"
HERE = Path(__file__).parent
KERNEL_REFRESHED = re.compile(r"/(stats/\w+|effective_bytes|sample_us|aggr_us)$")


def host_kdamonds() -> list[int]:
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().startswith("kdamond."):
                pids.append(int(comm.parent.name))
        except OSError:
            continue
    return pids


def test_check_refuses_the_hosts_foreign_kdamond_read_only(tmp_path: Path) -> None:
    if not Path(ADMIN).is_dir():
        pytest.skip(f"this host has no DAMON sysfs tree at {ADMIN}")
    pids = host_kdamonds()
    if not pids:
        pytest.skip(
            "no kdamond runs on this host: damond must never probe the host's own DAMON "
            "tree, so the foreign-kdamond refusal cannot be shown here"
        )
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a private read-only mount namespace")
    config = tmp_path / "damond.toml"
    config.write_text(
        'backend = "sysfs"\n'
        "[[contexts]]\n"
        'name = "pull"\nnode = 1\nscheme = { target_nid = 0 }\n'
        'goal = { metric = "node_eligible_mem_bp", nid = 0, target_bp = 6000 }\n'
    )
    state_dir = tmp_path / "state"
    script = (
        "set -eu\n"
        "mount --make-rprivate /\n"
        f"mount --bind {ADMIN} {ADMIN}\n"
        f"mount -o remount,bind,ro {ADMIN}\n"
        f'exec "{sys.executable}" "{HERE / "host_readonly_check.py"}" "{config}" "{state_dir}"\n'
    )
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=HERE.parent,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["read_only"] is True
    assert out["rc"] == 3, out["stderr"]
    assert "foreign kdamond runs: kdamond" in out["stderr"]
    assert any(f"(pid {pid})" in out["stderr"] for pid in pids), out["stderr"]
    assert "damond wrote nothing" in out["stderr"]
    refreshing = any(v.strip() not in ("", "0") for v in out["refresh_ms"].values())
    unexpected = [p for p in out["changed"] if not (refreshing and KERNEL_REFRESHED.search(p))]
    assert unexpected == [], f"the host's DAMON tree changed: {unexpected}"
    assert out["files"] > 0
    assert not state_dir.exists()
    print(out["stderr"])
