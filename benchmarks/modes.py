"""Every scenario of the library in every controller mode, against a physical oracle.

Runs each ``benchmarks/scenarios/*.toml`` for an hour of simulated time under damond's
own controller (``daemon``) and under the kernel's two tuners fed damond's corrected
metric (``kernel consist``, ``kernel temporal``), and prints one table. For every phase
of a run (the start, and each shift, set size or target change) an oracle works out,
from the machine's true access rates at that moment:

- the minimum bytes that must move: per class of pages (access pattern), the goals on
  it bound each node's bytes; moving the excess of the nodes above their bounds to the
  nodes below theirs (or with room), nearest first along the contexts' routes, counts
  each byte once per hop however many contexts share its goal;
- the physical lower bound on the time to settle: the detection lag plus the minimum
  bytes over the fastest a scheme may move them (:func:`fastest_rate`: its quota's
  rate, at most the machine's migration bandwidth, and slower still as a kdamond waits
  for the pages it migrates before it monitors again). Monitoring sees pages whose
  access changed, and pages at the node they were moved to, only after
  ``age_min + 1`` aggregations: the lag is
  that once to see a change of the workload (the start, a shift, a set's size; a new
  target is seen at once) and once more per hop the moved pages take (a move is seen
  at its destination, where the next hop or the goal picks it up), with the longest
  ``age_min`` of the scenario's contexts;
- the band to settle into: a promoter/demoter pair's targets, else +-100 bp of the
  target (or, for a goal the oracle leaves alone, its side of the target), widened
  to one region where a region moves the goal's metric by more than 100 bp: the
  controller cannot resolve finer than one region (its dead band is never narrower,
  ``damond.config.context.step_floor_bp``), so it may rightly rest up to a region
  off its target, and a narrower band would demand what no controller can do.

Settling is judged on the measured value, the one the controller, the logs and the
metrics see (the simulator's exact placement is not what an operator can check). A
phase has settled once every goal stays in its band to the phase's end, but for one
kind of excursion: after the value has first entered its band, a reading that leaves
it by at most one region and comes back within the detection lag is sampling noise,
not a state (noise takes a region out of the access pattern, its age restarts, and it
counts again ``age_min`` aggregations later; no controller can tell that from a real
change sooner, and damond rightly does not act on it). Anything longer or further out
counts, and so does every reading before the value first enters its band. A run passes
when, on a feasible scenario, every phase settles within 1.3x its bound, the bytes
moved are at most 1.15x the minimum, overshoot is at most 150 bp and churn (bytes moved
against the net change) is under 1 % of the smallest node's capacity per hour; on an
infeasible one (no placement meets every goal) when it ends held still with a reason,
each held context said so in one warning over the whole run, and it does not churn.

Usage: python benchmarks/modes.py [--duration S] [--seed N | --seeds 1-8] [--jobs N]
[--only NAME] [--mode MODE]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from damond.config import ContextConfig, KernelFeed, Mode, Settings, load_settings
from damond.config.context import step_floor_bp
from damond.model.damon import Direction, GoalTuner
from damond.model.units import BP_SCALE
from damond.runtime.logs import configure_logging
from damond.simulation.record import PhaseMark
from damond.simulation.run import SimulationResult, run_simulation
from damond.simulation.scoring import BAND_BP

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
MODES: dict[str, tuple[Mode, GoalTuner]] = {
    "daemon": (Mode.DAEMON, GoalTuner.CONSIST),
    "kernel consist": (Mode.KERNEL, GoalTuner.CONSIST),
    "kernel temporal": (Mode.KERNEL, GoalTuner.TEMPORAL),
}
SETTLE_RATIO_MAX = 1.3
BYTES_RATIO_MAX = 1.15
OVERSHOOT_MAX_BP = 150
CHURN_SHARE_MAX = 0.01
"""Of the smallest node's capacity, per hour."""


def load_scenario(path: Path, seed: int | None = None) -> Settings:
    overrides: dict[str, object] = {"backend": "simulated"}
    if seed is not None:
        overrides["simulation"] = {"seed": seed}
    return load_settings(path, overrides)


def in_mode(settings: Settings, mode: str) -> Settings:
    run_mode, tuner = MODES[mode]
    contexts = tuple(
        c.model_copy(
            update={
                "mode": run_mode,
                "controller": c.controller.model_copy(
                    update={"tuner": tuner, "kernel_feed": KernelFeed.CORRECTED}
                ),
            }
        )
        for c in settings.contexts
    )
    return settings.model_copy(update={"contexts": contexts})


# --- the oracle -----------------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    """The contexts that steer one goal: one metric of one node, over one class of pages."""

    metric: str
    nid: int
    pages: str
    """The access pattern, as text: contexts with the same one see the same pages."""
    raisers: tuple[str, ...]
    lowerers: tuple[str, ...]


def pages_of(ctx: ContextConfig) -> str:
    return ctx.scheme.access_pattern.model_dump_json()


def goals_of(settings: Settings) -> list[Goal]:
    found: dict[tuple[str, int, str], tuple[list[str], list[str]]] = {}
    for ctx in settings.contexts:
        raisers, lowerers = found.setdefault(
            (ctx.goal.metric, ctx.goal.nid, pages_of(ctx)), ([], [])
        )
        (raisers if ctx.direction is Direction.RAISES else lowerers).append(ctx.name)
    return [Goal(m, n, p, tuple(r), tuple(lo)) for (m, n, p), (r, lo) in found.items()]


@dataclass(frozen=True)
class PhaseOracle:
    start_s: float
    end_s: float
    label: str
    feasible: bool
    min_bytes: int
    bound_s: float
    bands: dict[str, tuple[float, float]]
    """Per goal's first context, the band (bp) it must settle into."""
    regions_bp: dict[str, float]
    """Per goal's first context, one region in bp: how far a reading can be off from
    sampling noise alone."""
    lag_s: float
    """The detection lag: the longest a noisy reading takes to come back."""


def hops(routes: set[tuple[int, int]], nodes: Sequence[int]) -> dict[tuple[int, int], int]:
    """Fewest moves from node to node along ``routes`` (absent: unreachable)."""
    out: dict[tuple[int, int], int] = {}
    for a in nodes:
        seen = {a: 0}
        todo = deque([a])
        while todo:
            x = todo.popleft()
            for s, d in routes:
                if s == x and d not in seen:
                    seen[d] = seen[x] + 1
                    todo.append(d)
        out.update({(a, b): n for b, n in seen.items() if b != a})
    return out


def transport(
    have: Mapping[int, float],
    low: Mapping[int, float],
    high: Mapping[int, float],
    dist: Mapping[tuple[int, int], int],
) -> tuple[float, dict[int, float], int] | None:
    """Bytes x hops to bring every node within [low, high], nearest first, where the
    bytes end up and the most hops a byte takes; None if it cannot be done."""
    now = dict(have)
    give = {n: now[n] - high[n] for n in now if now[n] > high[n]}
    take = {n: low[n] - now[n] for n in now if now[n] < low[n]}
    cost = 0.0
    most_hops = 0

    def move(src: int, dst: int, amount: float) -> None:
        nonlocal cost, most_hops
        now[src] -= amount
        now[dst] += amount
        cost += amount * dist[(src, dst)]
        most_hops = max(most_hops, dist[(src, dst)])

    for (src, dst), _ in sorted(dist.items(), key=lambda kv: kv[1]):
        amount = min(give.get(src, 0.0), take.get(dst, 0.0))
        if amount > 0:
            move(src, dst, amount)
            give[src] -= amount
            take[dst] -= amount
    for (src, dst), _ in sorted(dist.items(), key=lambda kv: kv[1]):
        if give.get(src, 0.0) > 0 and dst not in give:
            amount = min(give[src], max(0.0, high[dst] - now[dst]))
            if amount > 0:
                move(src, dst, amount)
                give[src] -= amount
        if take.get(dst, 0.0) > 0 and src not in take:
            amount = min(take[dst], max(0.0, now[src] - low[src]))
            if amount > 0:
                move(src, dst, amount)
                take[dst] -= amount
    if any(v > 1 for v in give.values()) or any(v > 1 for v in take.values()):
        return None
    return cost, now, most_hops


def fastest_rate(ctx: ContextConfig, bandwidth: float) -> float:
    """The most bytes per second one scheme can move: its quota's rate, the machine's
    bandwidth, and a kdamond's cycle. A kdamond migrates synchronously: it applies its
    scheme at an aggregation and waits for the pages it moves before it monitors again,
    so each application of at most ``max_bytes`` takes an aggregation interval plus
    that many bytes' migration time. Each is a limit no controller can pass; the least
    of them bounds the rate (the last one at 512 MiB, 1 s and 1 GiB/s: a third less)."""
    quota = ctx.scheme.quota
    per_apply = quota.max_bytes
    cycle_s = ctx.intervals.aggr_us / 1e6 + per_apply / bandwidth
    return min(bandwidth, quota.max_bytes * 1000 / quota.reset_interval_ms, per_apply / cycle_s)


def oracle(settings: Settings, result: SimulationResult) -> list[PhaseOracle]:
    contexts = {c.name: c for c in settings.contexts}
    capacity = {n.id: n.capacity_bytes for n in settings.simulation.nodes}
    nodes = sorted(capacity)
    goals = goals_of(settings)
    rate = max(
        fastest_rate(c, settings.simulation.bandwidth_bytes_per_s) for c in contexts.values()
    )
    lag = max(
        (c.scheme.access_pattern.age_min + 1) * c.intervals.aggr_us / 1e6 for c in contexts.values()
    )
    phases = []
    marks = result.marks
    for k, mark in enumerate(marks[:-1]):
        targets = {
            c.name: target_at(c.series.t_s, c.series.target_bp, mark.t_s) for c in result.contexts
        }
        feasible, min_bytes, hops_needed, bands, regions = phase_needs(
            settings, goals, mark, targets, capacity, nodes
        )
        lags = int(mark.workload) + hops_needed
        phases.append(
            PhaseOracle(
                mark.t_s,
                marks[k + 1].t_s,
                mark.label,
                feasible,
                min_bytes,
                lags * lag + min_bytes / rate,
                bands,
                regions,
                lag,
            )
        )
    return phases


def target_at(times: Sequence[float], targets: Sequence[int], t_s: float) -> int:
    for t, target in zip(times, targets, strict=True):
        if t >= t_s:
            return target
    return targets[-1]


def phase_needs(
    settings: Settings,
    goals: Sequence[Goal],
    mark: PhaseMark,
    targets: Mapping[str, int],
    capacity: Mapping[int, int],
    nodes: Sequence[int],
) -> tuple[bool, int, int, dict[str, tuple[float, float]], dict[str, float]]:
    """Whether the phase's goals can all be met, the bytes x hops that takes, the most
    hops a byte takes, the bands and one region of each goal in bp."""
    feasible = True
    total = 0.0
    most_hops = 0
    bands: dict[str, tuple[float, float]] = {}
    regions: dict[str, float] = {}
    for pages in sorted({g.pages for g in goals}):
        on_pages = [g for g in goals if g.pages == pages]
        names = [n for g in on_pages for n in (*g.raisers, *g.lowerers)]
        have = {n: float(mark.steady_eligible[names[0]].get(n, 0)) for n in nodes}
        whole = sum(have.values())
        routes = {
            (c.node, c.scheme.target_nid)
            for c in settings.contexts
            if c.name in names and c.scheme.target_nid is not None  # None: moves nothing
        }
        low = dict.fromkeys(nodes, 0.0)
        high = {n: float(capacity[n]) for n in nodes}
        per_bp = {}
        for g in on_pages:
            per_bp[g] = (capacity[g.nid] if g.metric == "node_target_mem_bp" else whole) / BP_SCALE
            if g.raisers:
                low[g.nid] = max(low[g.nid], max(targets[n] for n in g.raisers) * per_bp[g])
            if g.lowerers:
                high[g.nid] = min(high[g.nid], min(targets[n] for n in g.lowerers) * per_bp[g])
        solved = None
        if all(low[n] <= high[n] for n in nodes):
            solved = transport(have, low, high, hops(routes, nodes))
        if solved is None:
            feasible = False
            solved = (0.0, have, 0)
        cost, final, hops_taken = solved
        total += cost
        most_hops = max(most_hops, hops_taken)
        for g in on_pages:
            first = (*g.raisers, *g.lowerers)[0]
            regions[first] = step_floor_bp(settings.simulation.chunk_bytes, per_bp[g])
            width = max(BAND_BP, regions[first])
            bands[first] = band(g, targets, have, final, per_bp[g], width)
    return feasible, round(total), most_hops, bands, regions


def band(
    g: Goal,
    targets: Mapping[str, int],
    have: Mapping[int, float],
    final: Mapping[int, float],
    per_bp: float,
    width_bp: float,
) -> tuple[float, float]:
    """A pair's targets widened by ``width_bp`` (the scoring band, or one region if
    wider); a lone side's target +-``width_bp`` if the oracle moves the goal's node,
    else just its side of the target."""
    low = max((targets[n] for n in g.raisers), default=None)
    high = min((targets[n] for n in g.lowerers), default=None)
    if low is not None and high is not None:
        return low - width_bp, high + width_bp
    target = low if low is not None else high
    assert target is not None
    moved = abs(final[g.nid] - have[g.nid]) >= max(per_bp, 1.0)
    if moved:
        return target - width_bp, target + width_bp
    return (target - width_bp, math.inf) if low is not None else (-math.inf, target + width_bp)


# --- judging a run ----------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    scenario: str
    mode: str
    feasible: bool
    settle_ratio: float | None
    """Worst phase's settle time over its bound; None: some phase never settled."""
    settle_s: float | None
    bound_s: float
    moved: int
    minimum: int
    overshoot_bp: int
    churn_per_hour: float
    churn_limit: float
    held_said: str
    failures: tuple[str, ...]


def settle_time(
    points: Sequence[tuple[float, int]],
    start_s: float,
    band: tuple[float, float],
    region_bp: float = 0.0,
    lag_s: float = 0.0,
    end_s: float = math.inf,
) -> float | None:
    """Seconds from ``start_s`` until the values stay within ``band`` to ``end_s``, but
    for sampling noise: once the value has been in the band, an excursion of at most
    ``region_bp`` beyond it that ends within ``lag_s`` does not count. None: never."""
    lo, hi = band

    def beyond(v: float) -> float:
        return max(lo - v, v - hi, 0.0)

    settled = start_s
    entered = False
    i = 0
    while i < len(points):
        if not beyond(points[i][1]):
            entered = True
            i += 1
            continue
        j = i
        while j < len(points) and beyond(points[j][1]):
            j += 1
        back_s = points[j][0] if j < len(points) else end_s
        noise = (
            entered
            and back_s - points[i][0] <= lag_s
            and all(beyond(v) <= region_bp for _, v in points[i:j])
        )
        if not noise:
            if j == len(points):
                return None
            settled = back_s
        i = j
    return settled - start_s


def judge(name: str, mode: str, settings: Settings, result: SimulationResult) -> Row:
    phases = oracle(settings, result)
    series = {c.name: c.series for c in result.contexts}
    worst_ratio: float | None = 0.0
    worst_settle: float | None = 0.0
    worst_bound = 0.0
    for k, p in enumerate(phases):
        last = k == len(phases) - 1
        for ctx, band in p.bands.items():
            points = [
                (t, v)
                for t, v in series[ctx].measured_points()
                if p.start_s <= t < p.end_s or (last and t == p.end_s)
            ]
            settle = settle_time(points, p.start_s, band, p.regions_bp[ctx], p.lag_s, p.end_s)
            if settle is None:
                worst_ratio = worst_settle = None
            elif worst_ratio is not None and worst_settle is not None:
                ratio = settle / p.bound_s if p.bound_s > 0 else 0.0
                if ratio >= worst_ratio:
                    worst_ratio, worst_settle, worst_bound = ratio, settle, p.bound_s
    feasible = all(p.feasible for p in phases)
    minimum = sum(p.min_bytes for p in phases)
    moved = result.machine_migrated_bytes
    smallest = min(n.capacity_bytes for n in settings.simulation.nodes)
    churn_limit = CHURN_SHARE_MAX * smallest
    overshoot = max(c.overshoot_bp for c in result.contexts)
    held = [c for c in result.contexts if c.held]
    repeated = any(len(c.warnings) > 1 for c in held)
    held_said = "-"
    if held:
        held_said = f"{len(held)} held, {len(result.warnings)} warning(s)"
    failures: list[str] = []
    if result.churn_bytes_per_hour >= churn_limit:
        failures.append("churn")
    if feasible:
        if worst_ratio is None:
            failures.append("never settles")
        elif worst_ratio > SETTLE_RATIO_MAX:
            failures.append("slow")
        if moved > BYTES_RATIO_MAX * minimum:
            failures.append("bytes")
        if overshoot > OVERSHOOT_MAX_BP:
            failures.append("overshoot")
    else:
        if not held or not result.warnings:
            failures.append("not held with a reason")
        if repeated:
            failures.append("said more than once")
    return Row(
        name, mode, feasible, worst_ratio, worst_settle, worst_bound, moved, minimum, overshoot,
        result.churn_bytes_per_hour, churn_limit, held_said, tuple(failures),
    )  # fmt: skip


def judged(settings: Settings) -> bool:
    """Whether the oracle can judge the scenario: every goal a share of hot memory (the
    metrics of the machine's memory settle on what the machine holds, not on pages)."""
    shares = ("node_target_mem_bp", "node_eligible_mem_bp")
    return all(c.goal.metric in shares for c in settings.contexts)


def run_one(job: tuple[Path, str, float, int | None]) -> Row:
    path, mode, duration_s, seed = job
    configure_logging("error", sys.stderr)
    settings = in_mode(load_scenario(path, seed), mode)
    result = asyncio.run(run_simulation(settings, duration_s))
    name = path.stem if seed is None else f"{path.stem} (seed {seed})"
    return judge(name, mode, settings, result)


# --- the table ------------------------------------------------------------------------


def _gib(n: float) -> str:
    return f"{n / (1 << 30):.2f}"


def _ratio(a: float, b: float) -> str:
    if b == 0:
        return "1.00" if a == 0 else "inf"
    return f"{a / b:.2f}"


HEADER = (
    "| scenario | mode | settle s (bound s) | settle / bound | moved GiB (min GiB) | moved / min "
    "| overshoot bp | churn MiB/h (limit) | held | verdict |"
)


def format_row(r: Row) -> str:
    if not r.feasible:
        settle = "infeasible"
        ratio = "-"
    elif r.settle_ratio is None:
        settle, ratio = "never", "-"
    else:
        settle, ratio = f"{r.settle_s:.0f} ({r.bound_s:.0f})", f"{r.settle_ratio:.2f}"
    verdict = "pass" if not r.failures else "FAIL: " + ", ".join(r.failures)
    return (
        f"| {r.scenario} | {r.mode} | {settle} | {ratio} | {_gib(r.moved)} ({_gib(r.minimum)}) "
        f"| {_ratio(r.moved, r.minimum) if r.feasible else '-'} | {r.overshoot_bp} "
        f"| {r.churn_per_hour / (1 << 20):.0f} ({r.churn_limit / (1 << 20):.0f}) | {r.held_said} "
        f"| {verdict} |"
    )


def seed_range(text: str) -> list[int]:
    """``--seeds``: ``FIRST-LAST`` (inclusive) or ``N,M,...``."""
    try:
        if "-" in text.strip("-"):
            first, last = (int(x) for x in text.split("-", 1))
            seeds = list(range(first, last + 1))
        else:
            seeds = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not FIRST-LAST or N,M,...") from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"{text!r} names no seed (FIRST > LAST)")
    return seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=3600.0)
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, help="overrides every scenario's seed")
    seeds.add_argument(
        "--seeds",
        type=seed_range,
        help="run every scenario on each of these seeds: FIRST-LAST or a comma list",
    )
    parser.add_argument("--jobs", type=int, default=2, help="processes (default: 2)")
    parser.add_argument("--only", action="append", help="scenario name (repeatable)")
    parser.add_argument(
        "--mode", action="append", choices=sorted(MODES), help="mode to run (repeatable)"
    )
    args = parser.parse_args()
    paths = sorted(SCENARIOS.glob("*.toml"))
    if args.only:
        unknown = set(args.only) - {p.stem for p in paths}
        if unknown:
            parser.error(f"--only: no scenario {', '.join(sorted(unknown))} in {SCENARIOS}")
        paths = [p for p in paths if p.stem in args.only]
    skipped = [p for p in paths if not judged(load_scenario(p))]
    paths = [p for p in paths if p not in skipped]
    modes = args.mode or list(MODES)
    run_seeds: list[int | None] = list(args.seeds) if args.seeds else [args.seed]
    jobs = [(p, mode, args.duration, s) for p in paths for mode in modes for s in run_seeds]
    with multiprocessing.Pool(max(1, args.jobs)) as pool:
        rows = pool.map(run_one, jobs)
    print(f"{len(paths)} scenarios, {args.duration:.0f} s simulated each, {len(modes)} modes")
    for p in skipped:
        print(
            f"skipped {p.stem}: its goals are not node shares, which this oracle judges "
            "(tests/test_workload_scenarios.py judges it)"
        )
    if args.seeds:
        print(f"seeds: {', '.join(map(str, args.seeds))}")
    print(HEADER)
    print("|" + "---|" * 10)
    for r in rows:
        print(format_row(r))
    daemon = [r for r in rows if r.mode == "daemon"]
    passed = sum(not r.failures for r in daemon)
    print(f"\ndaemon mode: {passed} of {len(daemon)} runs pass")


if __name__ == "__main__":
    main()
