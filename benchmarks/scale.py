"""64 simulated contexts at a 1 s interval: the daemon's CPU per context iteration and RSS.

Starts ``damond run`` as a subprocess on a simulated 64-node machine (32 pairs
of nodes, each pair with the seed's two contexts), lets it run, stops it with
SIGTERM and reads its CPU time and peak RSS from the kernel (wait4). The CPU
time includes the simulated machine, which runs inside the daemon's process.

Usage: python benchmarks/scale.py [--contexts N] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GIB = 1 << 30


def config(pairs: int) -> str:
    nodes = ", ".join(f"{{ id = {i}, capacity_bytes = {4 * GIB} }}" for i in range(2 * pairs))
    lines = [
        "interval_s = 1.0",
        "[metrics]\nenabled = false",
        "[mqtt]\nenabled = false",
        "[simulation]",
        "chunk_bytes = 134217728",
        f"nodes = [{nodes}]",
        "shifts = []",
        "sets = [",
        f"  {{ name = 'hot', bytes = {4 * pairs * GIB}, access_rate = 0.9 }},",
        f"  {{ name = 'cold', bytes = {2 * pairs * GIB}, access_rate = 0.01 }},",
        "]",
    ]
    for p in range(pairs):
        a, b = 2 * p, 2 * p + 1
        for node, peer, target in ((a, b, 4000), (b, a, 6000)):
            lines += [
                "[[contexts]]",
                f"name = 'ctx{node}'",
                f"node = {node}",
                f"scheme = {{ target_nid = {peer} }}",
                f"goal = {{ nid = {node}, target_bp = {target} }}",
            ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contexts", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    damond = str(Path(sys.executable).parent / "damond")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "scale.toml"
        cfg.write_text(config(args.contexts // 2))
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAMOND_")}
        env["DAMOND_STATE_DIR"] = tmp
        out = Path(tmp) / "log.jsonl"
        with out.open("w") as log:
            proc = subprocess.Popen([damond, "run", "-c", str(cfg)], stdout=log, env=env)
            time.sleep(args.seconds)
            proc.send_signal(signal.SIGTERM)
            _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        stopped = next(
            json.loads(line) for line in out.read_text().splitlines() if '"stopped"' in line
        )
    iterations = sum(stopped["iterations"].values())
    cpu = usage.ru_utime + usage.ru_stime
    expected = args.contexts * args.seconds
    print(
        f"contexts: {args.contexts}, wall time: {args.seconds:.0f} s, exit code {proc.returncode}"
    )
    print(
        f"context iterations: {iterations} ({100 * iterations / expected:.0f} % of one per second)"
    )
    print(f"daemon CPU: {cpu:.2f} s = {100 * cpu / args.seconds:.1f} % of one core")
    print(f"CPU per context iteration: {1000 * cpu / iterations:.3f} ms (start-up included)")
    print(f"peak RSS: {usage.ru_maxrss / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
