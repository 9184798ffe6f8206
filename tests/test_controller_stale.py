"""A reading that repeats after the context moved (or was given a quota) is no new measurement.

Seen on Linux 7.2 under QEMU (tests/test_vm_peer.py): a kdamond busy migrating
refreshes none of its statistics for seconds, so damond's pull context got the
same eligible bytes and the same scheme counters for up to 14 s, and sized an
8 MiB quota from that reading every second, its own moves unseen: the hot set's
share on node 0 went from 6186 to 7547 bp against a 6000 bp target.
"""

from __future__ import annotations

from damond.config import ContextConfig, ControllerConfig, GiB, GoalConfig, MiB, SchemeConfig
from damond.control.coordinator import Coordinator
from damond.control.tick import ContextControl
from damond.model import damon as model
from damond.model.measurement import SchemeStats, Snapshot

CAP = {0: 20 * GiB, 1: 40 * GiB}
STALE = {0: 10 * GiB, 1: 10 * GiB}  # node 0 holds 5000 bp of the hot memory


def pull_in() -> ContextConfig:
    return ContextConfig(
        name="pull",
        node=1,
        scheme=SchemeConfig(target_nid=0),
        goal=GoalConfig(metric="node_eligible_mem_bp", nid=0, target_bp=6000),
        controller=ControllerConfig(lag_s=2.0),
    )


def snap(t: float, eligible: dict[int, int], applied: int, tried: int = 0) -> Snapshot:
    return Snapshot(
        time_s=t,
        eligible_bytes=eligible,
        capacity_bytes=CAP,
        stats=SchemeStats(sz_tried=tried, sz_applied=applied),
        quota_bytes=0,
        effective_quota_bytes=0,
        running=True,
    )


def test_a_repeated_reading_after_moves_is_not_acted_on_again() -> None:
    control, coordinator = ContextControl(pull_in(), 1.0), Coordinator(1.0)
    first = control.tick(snap(0.0, STALE, 0), coordinator)
    assert first.acting
    moved = first.quota_bytes
    # the kernel moved what it was given; the measurement did not change for 10 s:
    # from lag_s on, when the moves have left the in-flight count, the gap it shows
    # is the one already acted on
    quotas = [control.tick(snap(t, STALE, moved), coordinator).quota_bytes for t in range(2, 11)]
    assert set(quotas) == {model.IDLE_QUOTA_BYTES}, quotas
    # a new reading (it saw the moves: node 0 gained them) is acted on again
    fresh = {0: STALE[0] + moved, 1: STALE[1] - moved}
    assert control.tick(snap(11.0, fresh, moved), coordinator).acting


def test_a_reading_with_frozen_statistics_after_a_quota_is_not_acted_on_again() -> None:
    """The kdamond refreshed nothing since the quota was given: neither the reading nor
    the scheme's counters; what it moved is unknown, so the gap is not sized again."""
    control, coordinator = ContextControl(pull_in(), 1.0), Coordinator(1.0)
    assert control.tick(snap(0.0, STALE, 0), coordinator).acting
    for t in (2.0, 3.0, 4.0, 5.0):  # from lag_s on
        assert not control.tick(snap(t, STALE, 0), coordinator).acting


def test_a_repeated_reading_whose_scheme_tried_and_moved_nothing_is_acted_on() -> None:
    """The counters moved (the scheme tried; the destination took nothing): the
    statistics are fresh, the reading rightly the same, and the gap still open."""
    control, coordinator = ContextControl(pull_in(), 1.0), Coordinator(1.0)
    control.tick(snap(0.0, STALE, 0), coordinator)
    again = control.tick(snap(3.0, STALE, 0, tried=8 * MiB), coordinator)
    assert again.acting and again.quota_bytes >= 1 * MiB
