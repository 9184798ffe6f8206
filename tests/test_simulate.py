"""Convergence on the simulator, measured the way ``damond simulate`` reports it."""

from __future__ import annotations

import io

import pytest

from damond.config import GiB, MemorySetConfig, Settings, load_settings
from damond.simulation.progress import ProgressLine
from damond.simulation.run import PROGRESS_EVERY, SimulationResult, run_simulation
from damond.simulation.scoring import churn_bytes, overshoot, phase_overshoot, time_to_goal


@pytest.fixture(scope="module")
def default_run() -> SimulationResult:
    import asyncio

    return asyncio.run(run_simulation(load_settings(None), 3600.0))


def test_each_context_ends_within_100bp_and_stays_for_the_last_tenth(
    default_run: SimulationResult,
) -> None:
    for ctx in default_run.contexts:
        assert abs(ctx.final_bp - ctx.target_bp) <= 100, ctx
        tail = [v for t, v in default_run.history[ctx.name] if t >= 0.9 * 3600]
        assert tail and all(abs(v - ctx.target_bp) <= 100 for v in tail), ctx.name
        assert ctx.time_to_goal_s is not None


def test_the_default_run_does_not_ping_pong(default_run: SimulationResult) -> None:
    assert default_run.machine_pingpong_bytes == 0
    # the shift at 30 minutes needs a rebalance, so both directions moved memory
    assert all(c.migrated_bytes > 0 for c in default_run.contexts)


async def test_an_infeasible_goal_set_holds_still() -> None:
    """34 GiB hot, but 60 % of node 0 plus 40 % of node 1 has room for 28 GiB only."""
    base = load_settings(None)
    sets = (
        MemorySetConfig(name="hot", bytes=34 * GiB, access_rate=1.0, placement=1),
        MemorySetConfig(name="idle", bytes=4 * GiB, access_rate=0.0, placement=0),
    )
    cfg: Settings = base.model_copy(
        update={"simulation": base.simulation.model_copy(update={"sets": sets, "shifts": ()})}
    )
    result = await run_simulation(cfg, 1200.0)
    smallest = min(n.capacity_bytes for n in cfg.simulation.nodes)
    assert result.machine_pingpong_bytes < 0.01 * smallest
    node0, node1 = result.contexts
    assert node0.final_bp > node0.target_bp + 100  # both above target: nothing can help
    assert node1.final_bp > node1.target_bp + 100


def test_time_to_goal_is_when_the_value_stays_in_the_band() -> None:
    hist = [(0.0, 0), (1.0, 5000), (2.0, 6000), (3.0, 7000), (4.0, 6050), (5.0, 5990)]
    assert time_to_goal(hist, 6000) == 4.0
    assert time_to_goal(hist[:4], 6000) is None
    assert time_to_goal([(0.0, 6000)], 6000) == 0.0


def test_overshoot_is_the_excursion_past_the_target_after_crossing_it() -> None:
    approach_from_below = [(0.0, 5000), (1.0, 5950), (2.0, 6300), (3.0, 6000)]
    assert overshoot(approach_from_below, 6000) == 300
    settled_then_disturbed = [(float(t), 6000) for t in range(12)] + [(12.0, 6500)]
    assert overshoot(settled_then_disturbed, 6000) == 0
    never_crosses = [(0.0, 5000), (1.0, 5800), (2.0, 5990)]
    assert overshoot(never_crosses, 6000) == 0


def test_overshoot_counts_a_jump_straight_across_the_band() -> None:
    """Problem 7: it read 0 when the value jumped over the band."""
    assert overshoot([(0.0, 5000), (1.0, 7000), (2.0, 6050)], 6000) == 1000
    disturbed_then_across = [(float(t), 6000) for t in range(10)] + [(10.0, 4000), (11.0, 7000)]
    assert overshoot(disturbed_then_across, 6000) == 1000


def test_overshoot_counts_a_value_that_crosses_and_never_enters_the_band() -> None:
    """Problem 7: it read 0 when the value crossed but never came into the band."""
    assert overshoot([(0.0, 5000), (1.0, 6300), (2.0, 6250), (3.0, 6400)], 6000) == 400
    from_above = [(0.0, 8000), (1.0, 5500), (2.0, 5600)]
    assert overshoot(from_above, 6000) == 500


def test_each_phase_judges_overshoot_from_its_own_start() -> None:
    """A new target (or a shift) starts again: approaching the new target from above is
    not overshoot of the old one."""
    points = [
        (0.0, 5000, 6000),
        (1.0, 6500, 6000),
        (2.0, 6000, 6000),
        (3.0, 6000, 5000),
        (4.0, 4800, 5000),
        (5.0, 5000, 5000),
    ]
    assert phase_overshoot(points, [(0.0, 5000), (3.0, 6000)]) == 500
    calm = [(t, v if t != 1.0 else 6000, target) for t, v, target in points]
    assert phase_overshoot(calm, [(0.0, 5000), (3.0, 6000)]) == 200


def test_a_measurement_lagging_a_shift_is_not_overshoot() -> None:
    """After the hot set shifts, pages that went cold stop counting at once while the
    newly hot ones count only once they have aged: the measured value dips before it
    jumps to where the shift really put it. Judged from the true value at the shift,
    coming down from there is no overshoot."""
    points = [(0.0, 4000, 4000), (1.0, 3100, 4000), (2.0, 4800, 4000), (3.0, 4000, 4000)]
    assert phase_overshoot(points, [(0.0, 4800)]) == 0
    assert phase_overshoot(points, [(0.0, None)]) == 800


def test_a_reading_in_the_band_before_a_shift_is_seen_shows_no_side() -> None:
    """The phase's first reading is the last phase's value, settled 15 bp on the side
    the shift starts from: it used to count as having come from there, so the dip
    that follows, before the newly hot pages have aged, read as 1000 bp of overshoot."""
    points = [(0.0, 4015, 4000), (1.0, 3000, 4000), (2.0, 4421, 4000), (3.0, 4015, 4000)]
    assert phase_overshoot(points, [(0.0, 4421)]) == 0
    really = [*points, (4.0, 3700, 4000)]
    assert phase_overshoot(really, [(0.0, 4421)]) == 300


def test_churn_counts_bytes_moved_back_whichever_pages_come_back() -> None:
    """Problem 3's accounting: a region that goes out and a different one of the same
    class that comes back is churn, which a same-page ping-pong counter misses."""
    gib = 1 << 30
    # 3 GiB moved 1 -> 0 and 1 GiB back 0 -> 1: 4 GiB moved for a net change of 2 GiB
    flows = [{}, {(1, 0, "hot"): 3 * gib, (0, 1, "hot"): 1 * gib}]
    assert churn_bytes(flows) == 2 * gib


def test_churn_ignores_moves_that_each_serve_the_net_change() -> None:
    gib = 1 << 30
    # hot pages promoted onto node 0 while cold pages are demoted off it
    assert churn_bytes([{}, {(1, 0, "hot"): 2 * gib, (0, 1, "cold"): 2 * gib}]) == 0
    # hot pages climbing a chain of tiers, far CXL (2) -> CXL (1) -> DRAM (0)
    assert churn_bytes([{}, {(2, 1, "hot"): 3 * gib, (1, 0, "hot"): 2 * gib}]) == 0
    # 1 GiB out in one phase, back in the next (the hot set moved): no churn either,
    # but the same flows within one phase are
    out_then_back = [{}, {(0, 1, "hot"): gib}, {(0, 1, "hot"): gib, (1, 0, "hot"): gib}]
    assert churn_bytes(out_then_back) == 0
    assert churn_bytes([out_then_back[0], out_then_back[2]]) == 2 * gib


async def test_churn_of_a_run_is_its_moves_against_the_net_change() -> None:
    """With a dead band of 0 the seed's contexts move memory both ways; the run's churn
    is what moved beyond each route's net change, and at least the same-page ping-pong."""
    base = load_settings(None)
    contexts = tuple(
        c.model_copy(update={"controller": c.controller.model_copy(update={"deadband_bp": 0})})
        for c in base.contexts
    )
    cfg = base.model_copy(update={"contexts": contexts})
    result = await run_simulation(cfg, 900.0)
    assert result.churn_bytes >= result.machine_pingpong_bytes
    flows = result.marks[-1].flows
    assert result.machine_migrated_bytes == sum(flows.values())
    assert result.churn_bytes == churn_bytes([m.flows for m in result.marks])


async def test_a_run_reports_its_progress_in_simulated_seconds() -> None:
    seen: list[tuple[float, float]] = []
    await run_simulation(load_settings(None), 300.0, lambda done, total: seen.append((done, total)))
    assert seen[0] == (0.0, 300.0)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert len(seen) == 300 // PROGRESS_EVERY + 1


def test_the_progress_line_shows_after_its_delay_and_is_cleared() -> None:
    out = io.StringIO()
    line = ProgressLine(out, show_after_s=0.0)
    line(900.0, 3600.0)
    assert out.getvalue().startswith("\rsimulating: 900/3600 s (25%), ")
    line.close()
    assert out.getvalue().endswith("\r\033[K")
    quiet = io.StringIO()
    slow = ProgressLine(quiet, show_after_s=3600.0)
    slow(900.0, 3600.0)
    slow.close()
    assert quiet.getvalue() == ""
