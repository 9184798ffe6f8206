"""SysfsBackend against fake 6.12, 6.18 and 7.2 trees: writing, read-back, probing,
ownership, adoption, measurement and faults."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from damond.backend.base import Backend
from damond.backend.sysfs.ownership import RECORD_NAME
from damond.config import ContextConfig
from damond.control.translation import build_context
from damond.model.errors import BackendError, EnvironmentRefused
from tests.fakedamon import BLOCK, FakeKernel, FakeMachine, dump, make_machine
from tests.sysfs_support import backend, pull_context

MiB = 1 << 20


def cfg(**kw: object) -> ContextConfig:
    return ContextConfig.model_validate(pull_context(**kw))  # type: ignore[arg-type]


@pytest.fixture(params=["6.18", "7.2"])
def fake(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[FakeMachine, FakeKernel]:
    return make_machine(tmp_path / "root", request.param)


def kd0(m: FakeMachine) -> Path:
    return m.admin / "kdamonds/0"


async def test_open_stages_kdamonds_and_probes_7_2(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "7.2")
    b = backend(m, k, tmp_path / "state")
    await b.open()
    assert k.read(m.admin / "kdamonds/nr_kdamonds") == "2"  # one context + one spare
    f = b.features()
    assert f["node_eligible_mem_bp"] and f["goal_tuner"] and f["nr_snapshots"]
    assert f["core_filters"] and f["filter_allow"] and f["goal_nid"] and f["refresh_ms"]
    assert b.kernel_version() == "7.2.13+deb14-amd64"
    # the probe left the kdamond empty again
    assert k.read(kd0(m) / "contexts/nr_contexts") == "0"
    await b.close()
    assert k.read(m.admin / "kdamonds/nr_kdamonds") == "0"
    assert not (tmp_path / "state" / RECORD_NAME).exists()


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("6.12", {"core_filters": False, "filter_allow": False, "goal_nid": False}),
        ("6.18", {"core_filters": True, "filter_allow": True, "goal_nid": True}),
    ],
)
async def test_probe_degrades_on_old_kernels(
    tmp_path: Path, version: str, expected: dict[str, bool]
) -> None:
    m, k = make_machine(tmp_path / "root", version)
    b = backend(m, k, tmp_path / "state")
    await b.open()
    f = b.features()
    assert not f["node_eligible_mem_bp"] and not f["goal_tuner"] and not f["nr_snapshots"]
    assert f["migrate_hot"] and f["quota_goals"] and f["tried_bytes"]
    for key, value in expected.items():
        assert f[key] is value, key
    await b.close()


async def test_native_mode_refused_without_node_eligible_mem_bp(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "6.18")
    b = backend(m, k, tmp_path / "state", contexts=[pull_context("native")])
    with pytest.raises(EnvironmentRefused, match=r"mode native needs .*node_eligible_mem_bp"):
        await b.open()
    assert k.read(m.admin / "kdamonds/nr_kdamonds") == "0"


async def test_start_writes_layout_and_reads_it_back(fake: tuple[FakeMachine, FakeKernel]) -> None:
    m, k = fake
    b = backend(m, k, m.root.parent / "state")
    await b.open()
    await b.start_context(build_context(cfg()))
    kd = kd0(m)
    assert k.read(kd / "state") == "on"
    c = kd / "contexts/0"
    assert k.read(c / "operations") == "paddr"
    # one region covering both nodes (they are adjacent), three schemes
    assert k.read(c / "targets/0/regions/nr_regions") == "1"
    assert k.read(c / "targets/0/regions/0/end") == str(16 * BLOCK)
    assert k.read(c / "schemes/nr_schemes") == "3"
    w = c / "schemes/0"
    assert k.read(w / "action") == "migrate_hot"
    assert k.read(w / "target_nid") == "0"
    assert k.read(w / "quotas/bytes") == "1"  # daemon mode starts idle
    # the working scheme only acts on node 1: node 0's range is rejected
    f = w / "core_filters/0"
    assert (k.read(f / "type"), k.read(f / "matching"), k.read(f / "allow")) == ("addr", "Y", "N")
    assert (k.read(f / "addr_start"), k.read(f / "addr_end")) == ("0", str(8 * BLOCK))
    # per-node stat schemes, quota-less, same access pattern
    for i, (lo, hi) in ((1, (8, 16)), (2, (0, 8))):
        s = c / f"schemes/{i}"
        assert k.read(s / "action") == "stat"
        assert k.read(s / "quotas/bytes") == "0"
        assert k.read(s / "access_pattern/nr_accesses/min") == "10"
        assert k.read(s / "core_filters/0/addr_start") == str(lo * BLOCK)
        assert k.read(s / "core_filters/0/addr_end") == str(hi * BLOCK)
    record = json.loads((m.root.parent / "state" / RECORD_NAME).read_text())
    assert record["boot_id"] == m.boot_id
    assert record["kdamonds"]["0"] == {"context": "pull", "pid": int(k.read(kd / "pid"))}
    await b.close()
    assert k.read(m.admin / "kdamonds/nr_kdamonds") == "0"


@pytest.mark.parametrize(("version", "staged"), [("6.18", True), ("7.2", False)])
async def test_working_scheme_armed_after_first_quota_window_on_old_kernels(
    tmp_path: Path, version: str, staged: bool
) -> None:
    """Before 7.1 a scheme's first reset interval has no quota at all (a 6.12 guest
    migrated its whole hot set in it), so the scheme starts as ``stat``."""
    m, k = make_machine(tmp_path / "root", version)
    b = backend(m, k, tmp_path / "state")
    await b.open()
    k.writes.clear()
    await b.start_context(build_context(cfg()))
    action = "kdamonds/0/contexts/0/schemes/0/action"
    writes = [(p, v) for p, v in k.writes if p in (action, "kdamonds/0/state")]
    if staged:
        assert writes == [  # a new scheme's action is "stat": nothing to write before "on"
            ("kdamonds/0/state", "on"),
            (action, "migrate_hot"),
            ("kdamonds/0/state", "commit"),
        ]
    else:
        assert writes == [(action, "migrate_hot"), ("kdamonds/0/state", "on")]
    assert k.read(kd0(m) / "contexts/0/schemes/0/action") == "migrate_hot"
    await b.close()


async def test_6_12_uses_filters_without_allow(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "6.12")
    b = backend(m, k, tmp_path / "state", contexts=[pull_context("kernel")])
    await b.open()
    await b.start_context(build_context(cfg(mode="kernel")))
    w = kd0(m) / "contexts/0/schemes/0"
    assert k.read(w / "filters/nr_filters") == "1"
    assert not (w / "filters/0/allow").exists()
    assert k.read(w / "quotas/goals/0/target_metric") == "user_input"
    await b.close()


class MangleWeights(FakeKernel):
    """A kernel that stores a different value than written (a unit mismatch)."""

    def write(self, path: Path, value: str) -> None:
        if path.name == "age_permil":
            value = str(int(value) // 2)
        super().write(path, value)


async def test_read_back_mismatch_fails_loudly(tmp_path: Path) -> None:
    m, _ = make_machine(tmp_path / "root", "7.2")
    k = MangleWeights(m)
    b = backend(m, k, tmp_path / "state")
    await b.open()
    with pytest.raises(BackendError, match=r"age_permil: '500' -> '250'"):
        await b.start_context(build_context(cfg()))
    assert k.read(kd0(m) / "state") == "off"
    await b.close()


async def test_einval_names_file_and_value(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "7.2")
    b = backend(m, k, tmp_path / "state")
    await b.open()
    await b.start_context(build_context(cfg()))
    action = kd0(m) / "contexts/0/schemes/0/action"
    with pytest.raises(BackendError, match=rf"write 'migrate_warm' to {action}: EINVAL"):
        await b.worker.call(lambda s: s.write(action, "migrate_warm"))
    await b.close()


async def test_snapshot_measures_eligible_bytes_per_node(
    fake: tuple[FakeMachine, FakeKernel],
) -> None:
    m, k = fake
    m.hot_bytes = {0: 100 * MiB, 1: 300 * MiB}
    b = backend(m, k, m.root.parent / "state", sysfs={"measure_window_s": 0.001})
    await b.open()
    await b.start_context(build_context(cfg()))
    snap = await b.snapshot("pull")
    assert dict(snap.eligible_bytes) == {0: 100 * MiB, 1: 300 * MiB}
    assert snap.capacity_bytes[0] == 8 * BLOCK - 4096 * 1024
    assert snap.quota_bytes == 1 and snap.running
    m.hot_bytes = {0: 250 * MiB, 1: 150 * MiB}
    snap = await b.snapshot("pull")
    assert dict(snap.eligible_bytes) == {0: 250 * MiB, 1: 150 * MiB}
    await b.close()


async def test_a_fresh_kdamond_is_measured_only_after_its_warm_up(
    fake: tuple[FakeMachine, FakeKernel],
) -> None:
    m, k = fake
    m.hot_bytes = {0: 900 * MiB, 1: 100 * MiB}  # what DAMON's first, coarse regions show
    # a 100 ms quota window keeps 6.18's staged start (one window) inside the warm-up
    ctx = pull_context(scheme={"target_nid": 0, "quota": {"reset_interval_ms": 100}})
    warmup = {"warmup_aggregations": 1, "measure_window_s": 0.5}  # aggr_us: 1 s
    b = backend(m, k, m.root.parent / "state", contexts=[ctx], sysfs=warmup)
    await b.open()
    started = time.monotonic()

    async def adapted() -> None:
        await asyncio.sleep(0.6)
        m.hot_bytes = {0: 100 * MiB, 1: 300 * MiB}

    async with asyncio.TaskGroup() as tg:
        tg.create_task(adapted())
        await b.start_context(build_context(ContextConfig.model_validate(ctx)))
        assert time.monotonic() - started < 0.6
        snap = await b.snapshot("pull")
    # the first measurement is a whole window of readings taken after the warm-up
    assert dict(snap.eligible_bytes) == {0: 100 * MiB, 1: 300 * MiB}
    assert snap.time_s - started >= 1.5
    await b.close()


async def test_measurement_is_averaged_over_the_window(
    fake: tuple[FakeMachine, FakeKernel],
) -> None:
    m, k = fake
    m.hot_bytes = {0: 100 * MiB, 1: 300 * MiB}
    b = backend(m, k, m.root.parent / "state", sysfs={"measure_window_s": 1.0})
    await b.open()
    await b.start_context(build_context(cfg()))
    snap = await b.snapshot("pull")
    assert dict(snap.eligible_bytes) == {0: 100 * MiB, 1: 300 * MiB}
    m.hot_bytes = {0: 200 * MiB, 1: 0}
    await asyncio.sleep(0.5)
    snap = await b.snapshot("pull")  # readings of both states are in the window
    assert 100 * MiB < snap.eligible_bytes[0] < 200 * MiB
    assert 0 < snap.eligible_bytes[1] < 300 * MiB
    await asyncio.sleep(1.1)
    snap = await b.snapshot("pull")  # the old state has left the window
    assert dict(snap.eligible_bytes) == {0: 200 * MiB, 1: 0}
    await b.close()


async def test_set_quota_and_feed_goal_commit_online(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "7.2")
    b = backend(m, k, tmp_path / "state", contexts=[pull_context(), pull_context("kernel", "k")])
    await b.open()
    await b.start_context(build_context(cfg()))
    await b.start_context(build_context(cfg(mode="kernel", name="k")))
    k.writes.clear()
    await b.set_quota("pull", 64 * MiB)
    assert k.writes == [
        ("kdamonds/0/contexts/0/schemes/0/quotas/bytes", str(64 * MiB)),
        ("kdamonds/0/state", "commit"),
    ]
    snap = await b.snapshot("pull")
    assert snap.quota_bytes == 64 * MiB and snap.effective_quota_bytes == 64 * MiB
    k.writes.clear()
    await b.feed_goal("k", 5500, 6000)
    goal = "kdamonds/1/contexts/0/schemes/0/quotas/goals/0"
    assert k.writes == [
        (f"{goal}/current_value", "5500"),
        ("kdamonds/1/state", "commit_schemes_quota_goals"),
    ]
    await b.close()
    assert k.read(m.admin / "kdamonds/nr_kdamonds") == "0"


async def test_bad_commit_is_detected_and_restart_recovers(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "7.2")
    b = backend(m, k, tmp_path / "state")
    await b.open()
    model_ctx = build_context(cfg())
    await b.start_context(model_ctx)
    # someone leaves an invalid addr_unit behind (PAGE_SIZE / 3 is no power of two)
    k.write(kd0(m) / "contexts/0/addr_unit", "3")
    with pytest.raises(BackendError, match=r"off after 'commit'.*addr_unit: '1' -> '3'"):
        await b.set_quota("pull", 32 * MiB)
    assert k.read(kd0(m) / "state") == "off"
    # what the supervisor does next: tear down, start again from the configuration
    await b.stop_context("pull")
    await b.start_context(model_ctx)
    assert k.read(kd0(m) / "state") == "on"
    assert k.read(kd0(m) / "contexts/0/addr_unit") == "1"
    await b.close()


async def test_kdamond_stopped_from_outside_is_reported(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "7.2")
    b = backend(m, k, tmp_path / "state")
    await b.open()
    await b.start_context(build_context(cfg()))
    k.write(kd0(m) / "state", "off")
    with pytest.raises(BackendError, match="is off"):
        await b.snapshot("pull")
    await b.close()


async def test_kdamond_taken_over_from_outside_is_given_up(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "7.2")
    b = backend(m, k, tmp_path / "state")
    await b.open()
    await b.start_context(build_context(cfg()))
    k.write(kd0(m) / "state", "off")
    k.write(kd0(m) / "state", "on")  # someone else's now
    foreign_pid = k.read(kd0(m) / "pid")
    with pytest.raises(BackendError, match="someone restarted it"):
        await b.snapshot("pull")
    k.writes.clear()
    await b.stop_context("pull")
    await b.start_context(build_context(cfg()))  # on the spare kdamond
    assert all(not p.startswith("kdamonds/0/") for p, _ in k.writes)
    assert k.read(kd0(m) / "pid") == foreign_pid
    assert k.read(m.admin / "kdamonds/1/state") == "on"
    await b.close()
    assert k.read(kd0(m) / "state") == "on"  # left alone, and nr_kdamonds not rewritten
    assert k.read(m.admin / "kdamonds/nr_kdamonds") == "2"


async def test_node_losing_its_memory_stops_the_context(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "7.2")
    b = backend(m, k, tmp_path / "state", sysfs={"topology_refresh_s": 0.001})
    await b.open()
    await b.start_context(build_context(cfg()))
    m.offline_blocks = set(m.node_blocks[1])
    m.lay_out_nodes()
    await asyncio.sleep(0.01)
    with pytest.raises(BackendError, match="node 1 has no online memory"):
        await b.snapshot("pull")
    await b.close()


async def test_hotplug_restages_regions_online(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "7.2")
    b = backend(m, k, tmp_path / "state", sysfs={"topology_refresh_s": 0.001})
    await b.open()
    await b.start_context(build_context(cfg()))
    pid = k.read(kd0(m) / "pid")
    m.node_blocks[1] = [*m.node_blocks[1], 20, 21]  # a hole between block 15 and 20
    m.lay_out_nodes()
    await asyncio.sleep(0.01)
    await b.snapshot("pull")
    regions = kd0(m) / "contexts/0/targets/0/regions"
    assert k.read(regions / "nr_regions") == "2"
    assert (k.read(regions / "1/start"), k.read(regions / "1/end")) == (
        str(20 * BLOCK),
        str(22 * BLOCK),
    )
    assert k.read(kd0(m) / "pid") == pid and ("kdamonds/0/state", "commit") in k.writes
    await b.close()


# -- ownership and coexistence -------------------------------------------------------------


async def test_foreign_kdamond_refused_with_nothing_written(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "6.18")
    pid = k.start_foreign()
    before = dump(m.root)
    k.writes.clear()
    b = backend(m, k, tmp_path / "state")
    with pytest.raises(EnvironmentRefused, match=rf"foreign kdamond runs: kdamond 0 \(pid {pid}\)"):
        await b.open()
    assert k.writes == [] and dump(m.root) == before
    assert not (tmp_path / "state").exists()


async def test_staged_foreign_kdamond_refused(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "7.2")
    k.write(m.admin / "kdamonds/nr_kdamonds", "1")
    before = dump(m.root)
    b = backend(m, k, tmp_path / "state")
    with pytest.raises(EnvironmentRefused, match="staged"):
        await b.open()
    assert dump(m.root) == before


async def test_damon_stat_refused_with_how_to_free_it(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "7.2")
    m.set_module("damon_stat", True)
    before = dump(m.root)
    b = backend(m, k, tmp_path / "state")
    with pytest.raises(EnvironmentRefused, match=r"DAMON_STAT .*damon_stat.enabled=N"):
        await b.open()
    assert dump(m.root) == before


async def test_restart_readopts_running_kdamond(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "7.2")
    first = backend(m, k, tmp_path / "state", contexts=[pull_context("kernel")])
    await first.open()
    await first.start_context(build_context(cfg(mode="kernel")))
    await first.feed_goal("pull", 4000, 6000)
    pid = k.read(kd0(m) / "pid")
    first.worker.close()  # killed: no close(), the kdamond keeps running
    k.writes.clear()
    second = backend(m, k, tmp_path / "state", contexts=[pull_context("kernel")])
    await second.open()
    await second.start_context(build_context(cfg(mode="kernel")))
    assert k.read(kd0(m) / "pid") == pid
    assert all(p != "kdamonds/nr_kdamonds" and v != "on" for p, v in k.writes)
    goal = kd0(m) / "contexts/0/schemes/0/quotas/goals/0"
    assert k.read(goal / "current_value") == "4000"  # the last fed value was kept
    snap = await second.snapshot("pull")
    assert snap.running
    await second.close()
    assert k.read(m.admin / "kdamonds/nr_kdamonds") == "0"


async def test_record_from_another_boot_is_not_trusted(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "7.2")
    first = backend(m, k, tmp_path / "state")
    await first.open()
    await first.start_context(build_context(cfg()))
    first.worker.close()
    (m.proc / "sys/kernel/random/boot_id").write_text("another-boot\n")
    second = backend(m, k, tmp_path / "state")
    with pytest.raises(EnvironmentRefused, match="foreign kdamond runs: kdamond 0"):
        await second.open()


async def test_on_exit_leave_keeps_kdamonds_running(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "7.2")
    b = backend(m, k, tmp_path / "state", on_exit="leave")
    await b.open()
    await b.start_context(build_context(cfg()))
    await b.close()  # the supervisor does not tear the loops down with on_exit = "leave"
    assert k.read(kd0(m) / "state") == "on"
    assert (tmp_path / "state" / RECORD_NAME).exists()


async def test_check_run_beside_own_daemon_leaves_its_kdamonds(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "7.2")
    daemon = backend(m, k, tmp_path / "state")
    await daemon.open()
    await daemon.start_context(build_context(cfg()))
    check = backend(m, k, tmp_path / "state")
    await check.open()
    await check.close()
    assert k.read(kd0(m) / "state") == "on"
    await daemon.close()


# -- the I/O worker ---------------------------------------------------------------------------


async def test_ebusy_is_retried_then_reported(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "7.2")
    b = backend(m, k, tmp_path / "state")
    await b.open()
    await b.start_context(build_context(cfg()))
    k.ebusy_left = 3
    await b.snapshot("pull")
    assert k.ebusy_left == 0
    k.ebusy_left = 10**6
    with pytest.raises(BackendError, match="EBUSY"):
        await b.snapshot("pull")
    k.ebusy_left = 0
    await b.close()


class SlowWalk(FakeKernel):
    """update_schemes_tried_bytes holding the DAMON lock for a long apply interval."""

    delay_s = 0.0

    def write(self, path: Path, value: str) -> None:
        if value == "update_schemes_tried_bytes":
            import time

            time.sleep(self.delay_s)
        super().write(path, value)


async def test_blocking_command_times_out_without_blocking_the_event_loop(tmp_path: Path) -> None:
    m, _ = make_machine(tmp_path / "root", "6.18")
    k = SlowWalk(m)
    b = backend(m, k, tmp_path / "state", sysfs={"command_timeout_s": 0.3})
    await b.open()
    await b.start_context(build_context(cfg()))
    k.delay_s = 1.0
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    with pytest.raises(BackendError, match="timed out"):
        await b.snapshot("pull")
    task.cancel()
    assert ticks >= 15  # the loop kept running while the worker waited on the kernel
    k.delay_s = 0.0
    await asyncio.sleep(1.0)  # the walk ends; the worker is free again
    await b.close()


def test_backend_satisfies_protocol(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "7.2")
    b: Backend = backend(m, k, tmp_path / "state")
    assert b.name == "sysfs" and b.kernel_version() == "unknown"


def test_tiering_counters_come_from_the_hosts_vmstat(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "7.2")
    (m.proc / "vmstat").write_text("nr_free_pages 5\npgpromote_success 7\nnuma_pages_migrated 11\n")
    b = backend(m, k, tmp_path / "state")
    assert b.tiering_counters() == {"pgpromote_success": 7, "numa_pages_migrated": 11}
    (m.proc / "vmstat").unlink()
    assert b.tiering_counters() == {}  # informative only: an unreadable file is no error
