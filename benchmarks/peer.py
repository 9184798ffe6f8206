"""damond against the kernel's own quota-goal tuning (started by damo), on Linux 7.2.

Boots Debian's 7.2 kernel under QEMU (tests/vmguest.py) and runs
tests/vm/two_context_scenario.py in it: a workload with 64 MiB of hot memory on
node 0 and 256 MiB on node 1, and ``node_eligible_mem_bp`` of node 0 steered to
6000 bp, first by damond (a pull and a push context in daemon mode), then by the
kernel's tuner (damo starting a pull and a push scheme, each with a
``node_eligible_mem_bp`` goal). Prints one table, side by side: time to settle
(first reading within +-300 bp, counted from damond's first measurement or the
end of ``damo start``), bytes migrated, and the median error and sigma over the
steady minute after settling, measured two ways: DAMON's view (damond's
shared goal reading, averaged over 3 s; beside damo's schemes, two quota-less
``stat`` schemes, one per node, read every 2 s: the kernel does not publish its
own reading of the goal) and the workload's own pages on node 0 (``numa_maps``,
the same yardstick for both).

damo comes from PyPI, installed with pip into the VM cache (``--target``), where
the guest's Python (the host's, over 9p) imports it. damo 3.4.3 does not write a
goal's ``nid`` for ``node_eligible_mem_bp``, so the guest writes the push goal's
node itself, with the kdamond turned off and on again (a ``commit`` did not take
it on 7.2.13).

usage: .venv/bin/python benchmarks/peer.py [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DAMO_VERSION = "3.4.3"
GUEST_TIMEOUT_S = 900


def damo_dir() -> Path:
    sys.path.insert(0, str(ROOT))
    from tests import vmguest

    return vmguest.cache_dir() / f"damo-{DAMO_VERSION}"


def install_damo() -> Path:
    """damo from PyPI into the VM cache (once), importable by the guest's Python."""
    target = damo_dir()
    if not (target / "damo" / "damo.py").is_file():
        pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps"]
        subprocess.run([*pip, "--target", str(target), f"damo=={DAMO_VERSION}"], check=True)
    return target


def run(env: str = "") -> dict[str, Any]:
    """Boot the 7.2 guest, run both controllers, return the guest's JSON result.
    ``env``: variables for the guest script (``PARTS=kernel RUN_MAX_S=90``)."""
    sys.path.insert(0, str(ROOT))
    from tests import vmguest

    why = vmguest.missing_requirements("sid")
    if why:
        raise RuntimeError(why)
    damo = install_damo()
    out = ROOT / ".vm" / "result-peer.json"
    out.parent.mkdir(exist_ok=True)
    out.unlink(missing_ok=True)
    script = f"{env} {sys.executable} -m tests.vm.two_context_scenario {out} {damo}\n"
    guest = vmguest.run_in_guest("sid", ROOT, script, timeout_s=GUEST_TIMEOUT_S)
    if not out.exists():
        raise RuntimeError(f"no guest result:\n{guest.out[-3000:]}\n{guest.console[-3000:]}")
    data: dict[str, Any] = json.loads(out.read_text())
    data["guest"] = {"kernel": guest.kernel, "wall_s": round(guest.wall_s), "rc": guest.rc}
    data["guest"]["timed_out"] = guest.timed_out
    data["guest"]["out_tail"] = guest.out[-3000:]
    return data


def _cells(summary: dict[str, Any] | None) -> list[str]:
    if not summary or summary.get("settle_s") is None:
        return ["-", "-", "-"]
    err = summary["median_error_bp"]
    return [f"{summary['settle_s']:.0f} s", f"{err:+d} bp", f"{summary['sigma_bp']:.0f} bp"]


def table(result: dict[str, Any]) -> str:
    """The side-by-side table of a guest result (markdown)."""
    head = [
        "controller",
        "moved",
        "settle (view)",
        "median err (view)",
        "sigma (view)",
        "settle (pages)",
        "median err (pages)",
        "sigma (pages)",
    ]
    rows = [head, ["---"] * len(head)]
    names = {
        "damond": "damond daemon mode (pull + push context)",
        "kernel": "kernel tuner via damo (pull + push scheme)",
    }
    for part, name in names.items():
        res = result.get(part, {})
        if "error" in res or not res.get("samples"):
            rows.append([name, res.get("error", "did not run")] + [""] * (len(head) - 2))
            continue
        moved = f"{res['migrated_bytes'] / 2**20:.0f} MiB"
        rows.append(
            [name, moved, *_cells(res.get("view_summary")), *_cells(res.get("truth_summary"))]
        )
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the guest's whole result here")
    args = parser.parse_args()
    result = run()
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(
        f"kernel {result['guest']['kernel']}, {result.get('damo_version')}, "
        f"guest {result['guest']['wall_s']} s; target 6000 bp, band +-300 bp"
    )
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
