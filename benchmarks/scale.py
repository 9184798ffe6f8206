"""Simulated contexts at a 1 s interval: the daemon's steady-state CPU per context iteration.

For each context count, starts ``damond run`` twice as a subprocess on a
simulated machine that grows with the count (pairs of 4 GiB nodes, each pair
with the seed's two contexts), the short run once the long one is ready, and
stops each with SIGTERM when its time is up. The CPU time includes the
simulated machine, which runs inside the daemon's process. Start-up is the CPU
time (from /proc) when the daemon logs "ready", every context having iterated
once; the steady state is the long run's CPU time after "ready" (from wait4)
minus the short run's, per extra context iteration, so that neither start-up
nor shutdown counts.

``--profile`` runs both under cProfile instead and prints, per context
iteration, the functions whose time grows with the run (the long profile minus
the short one): where the steady-state time goes, inflated by the profiler.

Usage: python benchmarks/scale.py [--contexts N ...] [--seconds SHORT LONG] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import marshal
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

GIB = 1 << 30
REPO = Path(__file__).resolve().parent.parent

IDLE = "<method 'poll' of 'select.epoll' objects>"
"""What the event loop waits in between iterations (cProfile's clock is the wall clock)."""
ADDRESS = re.compile(r" at 0x[0-9a-f]+")
ProfileKey = tuple[str, int, str]
"""A profiled function: file, line, name (as pstats files key them)."""


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


@dataclass(frozen=True)
class Run:
    """What one daemon did: its context iterations and what the kernel charged it."""

    seconds: float
    iterations: int
    ready_cpu_s: float
    """CPU time when every context had iterated once (the daemon's "ready")."""
    cpu_s: float
    rss_mib: float
    exit_code: int
    profile: Path | None


def _cpu_s(pid: int) -> float:
    """CPU time of ``pid``'s threads so far, to the nanosecond (schedstat's first field)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


class Daemon:
    """A ``damond run`` subprocess with its own state directory, log and profile."""

    def __init__(self, cfg: Path, home: Path, seconds: float, profile: bool) -> None:
        home.mkdir()
        self.seconds = seconds
        self.log = home / "log.jsonl"
        self.profile = home / "daemon.pstats" if profile else None
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAMOND_")}
        env["DAMOND_STATE_DIR"] = str(home)
        profiler = ["-m", "cProfile", "-o", str(self.profile)] if self.profile else []
        cmd = [sys.executable, *profiler, "-m", "damond", "run", "-c", str(cfg)]
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, env=env)
        self.started = time.monotonic()
        self.ready_cpu_s = 0.0

    def _check_running(self) -> None:
        if self.proc.poll() is not None:
            sys.exit(f"damond exited early with code {self.proc.returncode} (see its stderr)")

    def wait_ready(self) -> None:
        """Wait for the daemon's "ready" log line and note its CPU time then."""
        while '"ready"' not in self.log.read_text():
            self._check_running()
            time.sleep(0.05)
        self.ready_cpu_s = _cpu_s(self.proc.pid)

    def stop(self) -> Run:
        """Stop the daemon when its time is up."""
        time.sleep(max(0.0, self.started + self.seconds - time.monotonic()))
        self._check_running()
        self.proc.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        stopped = next(
            json.loads(line) for line in self.log.read_text().splitlines() if '"stopped"' in line
        )
        return Run(
            seconds=self.seconds,
            iterations=sum(stopped["iterations"].values()),
            ready_cpu_s=self.ready_cpu_s,
            cpu_s=usage.ru_utime + usage.ru_stime,
            rss_mib=usage.ru_maxrss / 1024,
            exit_code=self.proc.returncode,
            profile=self.profile,
        )


def measure(contexts: int, seconds: tuple[float, float], profile: bool, tmp: Path) -> list[Run]:
    """The long run, then the short one once the long one is ready, so that their
    start-ups do not compete; each stops when its time is up."""
    cfg = tmp / f"scale{contexts}.toml"
    cfg.write_text(config(contexts // 2))
    daemons = []
    for s in sorted(seconds, reverse=True):
        daemons.append(Daemon(cfg, tmp / f"{contexts}-{s:g}s", s, profile))
        daemons[-1].wait_ready()
    return [daemon.stop() for daemon in reversed(daemons)]


@dataclass(frozen=True)
class Cost:
    """Steady-state and start-up CPU time."""

    steady_s: float
    """CPU per context iteration once running: the long run's CPU after "ready" minus
    the short run's, per extra iteration (the stop costs both runs the same)."""
    startup_s: float
    """CPU until every context has iterated once (imports, config, placing memory)."""

    @classmethod
    def of(cls, short: Run, long: Run) -> Cost:
        running = (long.cpu_s - long.ready_cpu_s) - (short.cpu_s - short.ready_cpu_s)
        steady = running / max(1, long.iterations - short.iterations)
        return cls(steady, (short.ready_cpu_s + long.ready_cpu_s) / 2)


def describe(contexts: int, runs: list[Run]) -> str:
    return f"{contexts} contexts: " + "; ".join(
        f"{r.seconds:g} s: {r.iterations} iterations "
        f"({100 * r.iterations / (contexts * r.seconds):.0f} % of one per second), "
        f"CPU {r.cpu_s:.2f} s ({r.ready_cpu_s:.2f} s at ready), peak RSS {r.rss_mib:.1f} MiB, "
        f"exit code {r.exit_code}"
        for r in runs
    )


def table(results: dict[int, Cost], rss_mib: dict[int, float]) -> str:
    lines = [
        f"{'contexts':>8} {'us/iteration':>13} {'% of a core':>12} {'start-up s':>11} "
        f"{'peak RSS MiB':>13}"
    ]
    for contexts, cost in results.items():
        lines.append(
            f"{contexts:>8} {1e6 * cost.steady_s:>13.1f} {100 * contexts * cost.steady_s:>12.2f} "
            f"{cost.startup_s:>11.2f} {rss_mib[contexts]:>13.1f}"
        )
    return "\n".join(lines)


def _load(profile: Path) -> dict[ProfileKey, tuple[int, float, float]]:
    """A pstats file's calls, own and cumulative time per function (the file is a
    marshalled dict); builtins named with their address are merged by name, as
    addresses differ between processes."""
    raw: dict[ProfileKey, tuple[int, int, float, float, object]] = marshal.loads(
        profile.read_bytes()
    )
    out: dict[ProfileKey, tuple[int, float, float]] = {}
    for (file, line, name), (_, calls, own, cum, _) in raw.items():
        key = (file, line, ADDRESS.sub("", name))
        calls0, own0, cum0 = out.get(key, (0, 0.0, 0.0))
        out[key] = (calls0 + calls, own0 + own, cum0 + cum)
    return out


def _where(key: ProfileKey) -> str:
    file, line, name = key
    if file == "~":
        return name
    path = Path(file)
    short = path.relative_to(REPO) if path.is_relative_to(REPO) else Path(*path.parts[-2:])
    return f"{short}:{line}({name})"


def print_profile(contexts: int, short: Run, long: Run, top: int) -> None:
    """The growth of each function's own and cumulative time from the short to the long run.

    cProfile times the wall clock, so the event loop's wait for its next timer
    (the selector's poll) is idle time: left out of the total and the tables.
    Cumulative time is listed for damond's own functions below the event loop
    (those that do not include the wait).
    """
    assert short.profile is not None and long.profile is not None
    before, after = _load(short.profile), _load(long.profile)
    iterations = max(1, long.iterations - short.iterations)
    rows = []
    for key, (n, tt, ct) in after.items():
        if key[2] == IDLE:
            continue
        n0, tt0, ct0 = before.get(key, (0, 0.0, 0.0))
        rows.append(
            (
                key,
                (n - n0) / iterations,
                1e6 * (tt - tt0) / iterations,
                1e6 * (ct - ct0) / iterations,
            )
        )
    busy = sum(r[2] for r in rows)
    own_code = [r for r in rows if Path(r[0][0]).is_relative_to(REPO / "damond") and r[3] <= busy]
    print(
        f"\n{contexts} contexts under cProfile: {busy:.1f} us per context iteration "
        f"in steady state, not counting the idle wait"
    )
    for title, column, candidates in (
        ("own time", 2, rows),
        ("cumulative time, damond's functions", 3, own_code),
    ):
        print(f"top {top} by {title} (us per context iteration, calls per context iteration):")
        for key, calls, own, cum in sorted(candidates, key=lambda r: r[column], reverse=True)[:top]:
            print(f"  {own:8.1f} own {cum:8.1f} cum {calls:8.2f} calls  {_where(key)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contexts", type=int, nargs="+", default=[8, 64, 256])
    parser.add_argument("--seconds", type=float, nargs=2, default=[10.0, 40.0])
    parser.add_argument("--profile", action="store_true", help="run under cProfile")
    parser.add_argument("--top", type=int, default=20, help="functions to print per profile")
    args = parser.parse_args()
    seconds = (args.seconds[0], args.seconds[1])
    costs: dict[int, Cost] = {}
    rss_mib: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for contexts in args.contexts:
            short, long = measure(contexts, seconds, args.profile, Path(tmp))
            print(describe(contexts, [short, long]), flush=True)
            if args.profile:
                print_profile(contexts, short, long, args.top)
            costs[contexts] = Cost.of(short, long)
            rss_mib[contexts] = max(short.rss_mib, long.rss_mib)
    profiled = " (under cProfile)" if args.profile else ""
    print(
        f"\nsteady state{profiled}: the {max(seconds):g} s run's CPU after ready minus the "
        f"{min(seconds):g} s run's, per extra iteration; start-up: CPU until ready"
    )
    print(table(costs, rss_mib))


if __name__ == "__main__":
    main()
