"""Simulated DAMOS migration is bounded, fails and is charged as the kernel's is."""

from __future__ import annotations

import random

from damond.backend.simulated.memory import Chunk
from damond.backend.simulated.regions import Monitor
from damond.backend.simulated.space import AddressSpace
from damond.config import GiB, MemorySetConfig, MiB, SimNodeConfig
from tests.test_simmachine import context as pull
from tests.test_simmachine import machine

FULL_DEST = {
    "nodes": (
        SimNodeConfig(id=0, capacity_bytes=1 * GiB),
        SimNodeConfig(id=1, capacity_bytes=8 * GiB),
    ),
    "sets": (
        MemorySetConfig(name="filler", bytes=1 * GiB, access_rate=0.0, placement=0),
        MemorySetConfig(name="hot", bytes=2 * GiB, access_rate=1.0, placement=1),
    ),
}


def test_a_full_destination_fails_and_is_charged_whole_by_default() -> None:
    m = machine(**FULL_DEST)
    scheme = m.add_scheme(pull(256 * MiB))
    m.advance_to(30.0)
    assert scheme.stats.sz_applied == 0
    assert scheme.stats.sz_tried > 0
    assert scheme.stats.qt_exceeds > 0  # the failures filled the quota
    assert m.used[0] <= m.capacity[0]


def test_fail_charge_charges_a_share_of_the_failures() -> None:
    whole = machine(**FULL_DEST)
    w = whole.add_scheme(pull(256 * MiB))
    quarter = machine(**FULL_DEST, fail_charge_num=1, fail_charge_denom=4)
    q = quarter.add_scheme(pull(256 * MiB))
    free = machine(**FULL_DEST, fail_charge_num=0, fail_charge_denom=1)
    f = free.add_scheme(pull(256 * MiB))
    for m in (whole, quarter, free):
        m.advance_to(30.0)
    assert q.stats.sz_applied == w.stats.sz_applied == 0
    # a quarter of each failure is charged: up to four times the bytes tried per window
    assert q.stats.sz_tried >= 1.8 * w.stats.sz_tried
    assert f.stats.qt_exceeds == 0 and f.stats.sz_tried >= q.stats.sz_tried


def test_a_region_larger_than_the_rest_of_the_quota_is_split_to_fit() -> None:
    m = machine()
    scheme = m.add_scheme(pull(192 * MiB))
    moved = []
    for t in range(1, 20):
        before = scheme.stats.sz_applied
        m.advance_to(float(t))
        moved.append(scheme.stats.sz_applied - before)
    assert max(moved) == 192 * MiB  # three chunks of a 1+ GiB region per window
    assert sum(moved) > 192 * MiB


def test_bandwidth_bounds_the_bytes_per_second_and_the_kdamond_waits() -> None:
    m = machine(bandwidth_bytes_per_s=512 * MiB)
    scheme = m.add_scheme(pull(0))
    t = 0.0
    while scheme.stats.sz_applied == 0:
        t += 0.25
        m.advance_to(t)
    moved = scheme.stats.sz_applied
    start = scheme.monitor.last_t
    assert m.mover.engine_free_at >= start + moved / (512 * MiB) - 1e-6
    seen = scheme.monitor.aggregations
    m.advance_to(m.mover.engine_free_at - 0.01)
    assert scheme.monitor.aggregations == seen  # no sampling while it migrates
    m.advance_to(m.mover.engine_free_at + 1.1)
    assert scheme.monitor.aggregations == seen + 1


def test_pages_being_migrated_are_not_seen_accessed_until_they_settle() -> None:
    space = AddressSpace({0: 4}, 64 * MiB)
    chunks = [Chunk(0, 64 * MiB, 1.0, "hot") for _ in range(4)]
    for c in chunks:
        space.place(c, 0)
    mon = Monitor(space, 20, 1.0, (1, 10), 1)
    mon.start, mon.end, mon.node = [0, 2], [2, 4], [0, 0]
    mon.nr, mon.last_nr, mon.age = [0, 0], [0, 0], [0, 0]
    space.hide(chunks[2], until=5.0)
    space.hide(chunks[3], until=5.0)
    rng = random.Random(1)
    space.settle(4.9)
    mon.sample(rng)
    assert mon.nr == [20, 0]
    space.settle(5.0)
    mon.sample(rng)
    assert mon.nr == [20, 20]


def test_moved_pages_stay_unseen_for_their_transfer_and_settle_time() -> None:
    m = machine(bandwidth_bytes_per_s=1 * GiB, migration_settle_s=0.5)
    scheme = m.add_scheme(pull(0))
    t = 0.0
    while scheme.stats.sz_applied == 0:
        t += 0.25
        m.advance_to(t)
    moved = [c for c in m.by_node[0]]
    assert moved and all(c.hidden_until > m.t for c in moved)
    last = max(c.hidden_until for c in moved)
    transfer = scheme.stats.sz_applied / (1 * GiB)
    assert last >= scheme.monitor.last_t + transfer + 0.5 - 1e-6


def test_effective_quota_is_reported_as_the_kernel_does() -> None:
    m = machine()
    unlimited = m.add_scheme(pull(0))
    bounded = m.add_scheme(pull(256 * MiB, name="bounded"))
    m.advance_to(2.0)
    assert unlimited.reported_esz == 0  # no goals, no size quota: 0, "no limit"
    assert bounded.reported_esz == 256 * MiB
