"""What the controller takes from DAMON's readings: how long its moves stay unseen, and
which readings it trusts with a full step.

Both come from runs that went wrong. In the simulator's growing-hot-set scenario the
promoted pages showed in DRAM 4-5 s after they moved, but counted as in flight for the
default 6 s: the last 250 MiB crawled at ``gain`` and the grow phase settled in 1.37x
its bound. On Linux 7.2 under QEMU (tests/test_vm_peer.py) one reading of a steady
node came 560 bp low, and the pull context moved 28 MiB on it at once.
"""

from __future__ import annotations

import pytest

from damond.config import ContextConfig, ControllerConfig, GiB, GoalConfig, MiB, SchemeConfig
from damond.control.controller import DaemonController, default_lag_s, least_lag_s
from damond.control.coordinator import Coordinator
from damond.control.plan import Member
from damond.control.tick import ContextControl
from damond.model import damon as model
from damond.model.measurement import SchemeStats, Snapshot

CAP = {0: 20 * GiB, 1: 40 * GiB}
STEP = 64 * MiB
BATCH = 512 * MiB
DRAM = 10 * GiB


def context(*, raises: bool = True, lag_s: float | None = None) -> ContextConfig:
    """A pull (node 1 -> 0) or a push (node 0 -> 1) on node 0's share of hot memory."""
    return ContextConfig(
        name="pull" if raises else "push",
        node=1 if raises else 0,
        scheme=SchemeConfig(target_nid=0 if raises else 1),
        goal=GoalConfig(metric="node_eligible_mem_bp", nid=0, target_bp=6000),
        controller=ControllerConfig(lag_s=lag_s),
    )


def learn(controller: DaemonController, seen_after_s: float, start_s: float = 0.0) -> None:
    """One batch after a quiet spell, shown at the destination ``seen_after_s`` later."""
    controller.note_applied(start_s, 0)
    controller.note_applied(start_s + 1, BATCH)
    controller.note_seen(start_s + 1, DRAM, STEP)
    t = start_s + 2
    while t <= start_s + 1 + default_lag_s(controller.ctx):
        shown = DRAM + BATCH if t - (start_s + 1) >= seen_after_s else DRAM
        controller.note_applied(t, BATCH)
        controller.note_seen(t, shown, STEP)
        t += 1


def in_flight_after(controller: DaemonController, start_s: float) -> list[int]:
    """A new batch after a quiet spell: the bytes in flight each second after it."""
    controller.note_applied(start_s, 2 * BATCH)
    out = []
    for t in range(1, 7):
        controller.note_applied(start_s + t, 2 * BATCH)
        out.append(controller.inflight_bytes)
    return out


def test_a_batch_leaves_the_in_flight_count_once_the_lag_seen_before_has_passed() -> None:
    ctx = context()
    assert (least_lag_s(ctx), default_lag_s(ctx)) == (5.0, 6.0)
    untaught = DaemonController(ctx, 1.0)
    learn(untaught, seen_after_s=6)
    assert untaught.window_s == 6.0
    assert in_flight_after(untaught, 20.0) == [BATCH] * 5 + [0]
    taught = DaemonController(ctx, 1.0)
    learn(taught, seen_after_s=5)
    assert taught.window_s == 5.0
    assert in_flight_after(taught, 20.0) == [BATCH] * 4 + [0, 0]


def test_a_destination_that_grows_too_soon_teaches_no_lag_below_the_least() -> None:
    """Another context's pages (or the workload) can grow the destination at once:
    no move is seen before one sampling and ``age_min`` aggregations."""
    controller = DaemonController(context(), 1.0)
    learn(controller, seen_after_s=1)
    assert controller.window_s == least_lag_s(controller.ctx)


def test_a_batch_never_seen_keeps_the_default_lag() -> None:
    controller = DaemonController(context(), 1.0)
    learn(controller, seen_after_s=99)
    assert controller.window_s == default_lag_s(controller.ctx)


def test_a_configured_lag_is_kept_and_small_batches_teach_nothing() -> None:
    fixed = DaemonController(context(lag_s=3.0), 1.0)
    learn(fixed, seen_after_s=5)
    assert fixed.window_s == 3.0
    small = DaemonController(context(), 1.0)
    small.note_applied(0, 0)
    small.note_applied(1, STEP)  # one region: noise alone could show that much
    small.note_seen(1, DRAM, STEP)
    small.note_seen(2, DRAM, STEP)
    small.note_seen(5, DRAM + STEP, STEP)
    assert small.window_s == default_lag_s(small.ctx)


def snap(t: float, share_bp: int) -> Snapshot:
    """Node 0 holds ``share_bp`` of 20 GiB of hot memory."""
    node0 = 20 * GiB * share_bp // 10_000
    return Snapshot(
        time_s=t,
        eligible_bytes={0: node0, 1: 20 * GiB - node0},
        capacity_bytes=CAP,
        stats=SchemeStats(),
        quota_bytes=0,
        effective_quota_bytes=0,
        running=True,
    )


@pytest.mark.parametrize("raises", [True, False])
def test_a_single_reading_far_from_the_target_is_acted_on_once_confirmed(raises: bool) -> None:
    control, coordinator = ContextControl(context(raises=raises), 1.0), Coordinator(1.0)
    off = 5400 if raises else 6600  # 600 bp on the side this context corrects

    def quota(t: float, share_bp: int) -> int:
        return control.tick(snap(t, share_bp), coordinator).quota_bytes

    assert quota(0, 6000) == model.IDLE_QUOTA_BYTES
    assert quota(1, off) == model.IDLE_QUOTA_BYTES  # one reading: not trusted yet
    assert quota(2, 6000) == model.IDLE_QUOTA_BYTES  # and it was noise
    assert quota(3, off) == model.IDLE_QUOTA_BYTES
    assert quota(4, off) == 512 * MiB  # confirmed: the gap's bytes, capped by max_bytes


def test_a_first_reading_and_a_changed_target_are_acted_on_at_once() -> None:
    control, coordinator = ContextControl(context(), 1.0), Coordinator(1.0)
    assert control.tick(snap(0, 5400), coordinator).quota_bytes == 512 * MiB
    control, coordinator = ContextControl(context(), 1.0), Coordinator(1.0)
    assert control.tick(snap(0, 6000), coordinator).quota_bytes == model.IDLE_QUOTA_BYTES
    goal = GoalConfig(metric="node_eligible_mem_bp", nid=0, target_bp=6600)
    higher = context().model_copy(update={"goal": goal})
    control.reconfigure(higher)
    assert control.tick(snap(1, 6000), coordinator).quota_bytes == 512 * MiB


def test_a_repeated_reading_keeps_counting_what_was_moved_since_it_was_taken() -> None:
    """Under TCG a kdamond busy migrating refreshed no reading for 4-6 s while damond's
    pull context kept moving: batches moved just before that reading dropped out of the
    in-flight count by the clock, though the reading never saw them, and the pages went
    580 bp past the target."""
    controller = DaemonController(context(lag_s=5.0), 1.0)
    for t in range(6):  # a new reading each second, and a batch
        controller.note_applied(t, t * BATCH)
        controller.reading_is_stale(t, {0: DRAM + t * STEP, 1: DRAM}, SchemeStats())
    for t in (6, 7, 8):  # the reading of t=5 again
        controller.note_applied(t, 5 * BATCH)
        controller.reading_is_stale(t, {0: DRAM + 5 * STEP, 1: DRAM}, SchemeStats())
    assert controller.reading_s == 5
    assert controller.inflight_bytes == 5 * BATCH  # moved after 0 s: unseen at 5 s
    controller.note_applied(9, 5 * BATCH)
    controller.reading_is_stale(9, {0: DRAM + 6 * STEP, 1: DRAM}, SchemeStats())
    assert controller.inflight_bytes == BATCH  # a new reading sees all but the last


def test_moves_after_a_repeated_reading_still_sit_at_their_source() -> None:
    ctx = context()

    def predicted(read_s: float | None) -> int:
        member = Member.of(
            ctx,
            deadband_bp=20,
            eligible_bytes={0: 4 * GiB, 1: 6 * GiB},
            capacity_bytes=CAP,
            inflight_bytes=GiB,
            time_s=10.0,
            read_s=read_s,
            moves=((7.0, GiB),),
        )
        return Coordinator(1.0).decide(member).predicted_bp

    assert predicted(None) == 4545  # 5 of 11 GiB: the move counted at node 0 only
    assert predicted(5.0) == 5000  # 5 of 10 GiB: the reading of 5 s still sees it on node 1
