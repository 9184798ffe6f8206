"""The simulated DAMON regions split, merge, sample and age as the kernel's do."""

from __future__ import annotations

import asyncio
import random

from damond.backend.simulated.backend import SimBackend
from damond.backend.simulated.machine import SimMachine
from damond.backend.simulated.memory import Chunk
from damond.backend.simulated.regions import Monitor, binomial
from damond.backend.simulated.space import AddressSpace
from damond.config import GiB, MemorySetConfig, MiB, SimNodeConfig, SimulationConfig
from damond.model import damon as model


def context(name: str, node: int, dest: int, aggr_us: int = 1_000_000) -> model.Context:
    return model.Context(
        name=name,
        operations=model.Operations.PADDR,
        intervals=model.Intervals(sample_us=aggr_us // 20, aggr_us=aggr_us),
        nodes=(node,),
        schemes=(
            model.Scheme(
                action=model.Action.MIGRATE_HOT,
                target_nid=dest,
                access_pattern=model.AccessPattern(nr_accesses_min=10, age_min=3),
                quota=model.Quota(bytes=model.IDLE_QUOTA_BYTES, reset_interval_ms=1000),
            ),
        ),
    )


def mixed_space(pattern: list[float]) -> AddressSpace:
    """One node whose frames hold chunks of the given rates, in order."""
    space = AddressSpace({0: len(pattern)}, 64 * MiB)
    for rate in pattern:
        space.place(Chunk(0, 64 * MiB, rate, "s"), 0)
    return space


def test_regions_stay_within_nr_regions_bounds_and_do_split_and_merge() -> None:
    cfg = SimulationConfig(nr_regions_min=5, nr_regions_max=20)
    m = SimMachine(cfg)
    scheme = m.add_scheme(context("c", 0, 1))
    frames = len(m.space.frames)
    counts = []
    for t in range(1, 120):
        m.advance_to(float(t))
        counts.append(len(scheme.monitor))
    assert all(5 <= c <= 20 for c in counts)
    assert max(counts) > min(counts)  # split, then merged back
    assert max(counts) < frames  # similar neighbours merged, not one region per chunk


def test_merge_takes_size_weighted_count_and_age_and_split_keeps_bounds() -> None:
    mon = Monitor(mixed_space([1.0] * 8), 20, 1.0, (1, 100), 1)
    mon.start, mon.end, mon.node = [0, 2], [2, 8], [0, 0]
    mon.nr, mon.last_nr, mon.age = [11, 12], [11, 12], [4, 8]
    mon.merge()  # threshold 12 // 10 = 1: close enough; ages grow by one first
    assert (mon.start, mon.end, mon.nr, mon.age) == ([0], [8], [11], [8])
    mon.reset_and_split(random.Random(1))
    assert mon.start[0] == 0 and mon.end[-1] == 8 and len(mon) in (2, 3)
    assert all(b == a for a, b in zip(mon.end, mon.start[1:], strict=False))


def test_age_restarts_when_the_count_moves_beyond_the_threshold() -> None:
    mon = Monitor(mixed_space([1.0] * 4), 20, 1.0, (1, 100), 1)
    mon.start, mon.end, mon.node = [0, 2], [2, 4], [0, 0]
    mon.nr, mon.last_nr, mon.age = [20, 0], [10, 0], [5, 5]
    mon.merge()  # threshold 2: the first moved by 10, the second by none
    assert mon.age == [0, 6]


def test_a_region_mixing_hot_and_cold_pages_reads_in_between() -> None:
    mon = Monitor(mixed_space([1.0, 0.0] * 8), 200, 1.0, (1, 100), 1)
    mon.start, mon.end, mon.node = [0], [16], [0]
    mon.nr, mon.last_nr, mon.age = [0], [0], [0]
    rng = random.Random(3)
    reads = []
    for _ in range(50):
        mon.sample(rng)
        reads.append(mon.nr[0])
    assert all(60 < r < 140 for r in reads)  # never all or nothing of 200 samples
    assert 90 < sum(reads) / len(reads) < 110


def test_binomial_matches_its_mean_and_bounds() -> None:
    rng = random.Random(5)
    draws = [binomial(rng, 20, 0.3) for _ in range(4000)]
    assert min(draws) >= 0 and max(draws) <= 20
    assert abs(sum(draws) / len(draws) - 6.0) < 0.15
    assert binomial(rng, 20, 0.0) == 0 and binomial(rng, 20, 1.0) == 20


def test_eligible_bytes_are_the_sizes_of_matching_regions() -> None:
    cfg = SimulationConfig(
        nodes=(
            SimNodeConfig(id=0, capacity_bytes=4 * GiB),
            SimNodeConfig(id=1, capacity_bytes=4 * GiB),
        ),
        sets=(
            MemorySetConfig(name="hot", bytes=1 * GiB, access_rate=1.0, placement=0),
            MemorySetConfig(name="cold", bytes=1 * GiB, access_rate=0.0, placement=0),
        ),
        shifts=(),
    )
    m = SimMachine(cfg)
    scheme = m.add_scheme(context("c", 0, 1))
    m.advance_to(60.0)
    mon = scheme.monitor
    eligible = m.eligible_bytes(scheme)
    matching = sum(
        (e - s) * cfg.chunk_bytes
        for s, e, x, g, n in zip(mon.start, mon.end, mon.nr, mon.age, mon.node, strict=True)
        if n == 0 and x >= 10 and g >= 3
    )
    assert eligible[0] == 1 * GiB
    assert eligible[1] == 0
    assert matching in (0, 1 * GiB)  # the view is the last aggregation's, before splitting


def test_each_context_runs_on_its_own_clock() -> None:
    m = SimMachine(SimulationConfig(clock_jitter=0.0))
    a = m.add_scheme(context("a", 0, 1))
    m.advance_to(0.5)
    b = m.add_scheme(context("b", 1, 0))  # starts half an interval later
    slow = m.add_scheme(context("slow", 0, 1, aggr_us=2_000_000))
    m.advance_to(100.0)
    assert (a.monitor.last_t, b.monitor.last_t) == (100.0, 99.5)
    assert (a.monitor.aggregations, slow.monitor.aggregations) == (100, 49)


def test_jittered_clocks_drift_apart() -> None:
    m = SimMachine(SimulationConfig(clock_jitter=0.02))
    a = m.add_scheme(context("a", 0, 1))
    b = m.add_scheme(context("b", 1, 0))
    m.advance_to(100.0)
    assert a.monitor.last_t != b.monitor.last_t
    assert 95 <= a.monitor.aggregations <= 105


def test_eligible_bytes_are_read_over_the_measure_window_as_damond_reads_a_kernel() -> None:
    def reads(window_s: float) -> list[int]:
        now = [0.0]
        cfg = SimulationConfig(
            measure_window_s=window_s,
            clock_jitter=0.0,
            sets=(MemorySetConfig(name="hot", bytes=1 * GiB, access_rate=1.0, placement=0),),
            shifts=(),
        )
        backend = SimBackend(cfg, (), lambda: now[0])

        async def run() -> list[int]:
            await backend.start_context(context("c", 0, 1))
            out = []
            for t in range(1, 12):
                now[0] = float(t)
                out.append((await backend.snapshot("c")).eligible_bytes[0])
            return out

        return asyncio.run(run())

    instant, averaged = reads(0.0), reads(3.0)
    assert set(instant) == {0, 1 * GiB}  # the last aggregation's view: all or nothing
    assert any(0 < b < 1 * GiB for b in averaged)  # the window's mean on the way up
    assert averaged[-1] == 1 * GiB
