"""DaemonMetrics: names and labels as in docs/metrics.md, values from the real loops.

The exposition is parsed with prometheus-client's parser (an independent
reader of the text format), fed by real context loops on the simulated backend.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from damond import __version__
from damond.backend.simulated.backend import SimBackend
from damond.config import FaultConfig, Settings, SimulationConfig
from damond.control.coordinator import Coordinator
from damond.control.status import ContextStatus
from damond.metrics.exporter import ITERATION_BUCKETS_S, DaemonMetrics
from damond.model.measurement import SchemeStats, Snapshot
from damond.runtime.loop import ContextLoop
from damond.runtime.supervisor import Supervisor

# docs/metrics.md: sample name -> label names.
DESIGN_SAMPLES = {
    "damond_goal_target_ratio": {"context", "goal_metric", "node", "cgroup"},
    "damond_goal_current_ratio": {"context", "goal_metric", "node", "cgroup"},
    "damond_node_capacity_bytes": {"node"},
    "damond_node_eligible_bytes": {"context", "node"},
    "damond_quota_bytes": {"context"},
    "damond_quota_effective_bytes": {"context"},
    "damond_scheme_tried_bytes_total": {"context"},
    "damond_scheme_applied_bytes_total": {"context"},
    "damond_scheme_quota_exceeds_total": {"context"},
    "damond_context_up": {"context"},
    "damond_context_restarts_total": {"context"},
    "damond_control_iteration_seconds_bucket": {"context", "le"},
    "damond_control_iteration_seconds_sum": {"context"},
    "damond_control_iteration_seconds_count": {"context"},
    "damond_policy_updates_total": {"scope", "result"},
    "damond_policy_generation": {"scope"},
    "damond_mqtt_connected": set(),
    "damond_kernel_feature_supported": {"feature"},
    "damond_build_info": {"version", "backend", "kernel"},
}
DESIGN_TYPES = {
    "damond_scheme_tried_bytes": "counter",
    "damond_scheme_applied_bytes": "counter",
    "damond_scheme_quota_exceeds": "counter",
    "damond_context_restarts": "counter",
    "damond_policy_updates": "counter",
    "damond_control_iteration_seconds": "histogram",
    "damond_goal_target_ratio": "gauge",
    "damond_quota_bytes": "gauge",
}


def parse(text: bytes) -> dict[str, list[Sample]]:
    """Samples by sample name."""
    samples: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def types(text: bytes) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text.decode())}


def value(samples: dict[str, list[Sample]], name: str, **labels: str) -> float:
    matches = [
        s.value for s in samples[name] if all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(matches) == 1, (name, labels, samples.get(name))
    return matches[0]


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


class SimRig:
    """The seed's contexts on the simulated backend, on a clock the test moves."""

    def __init__(self, tmp_path: Path, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.now = 0.0
        self.backend = SimBackend(self.settings.simulation, self.settings.contexts, self.clock)
        self.metrics = DaemonMetrics(self.backend, mqtt_enabled=True)
        coordinator = Coordinator(interval_s=1.0)
        self.loops = {
            c.name: ContextLoop(c, self.backend, coordinator, 1.0, [self.metrics])
            for c in self.settings.contexts
        }

    def clock(self) -> float:
        return self.now

    async def start(self) -> None:
        await self.backend.open()
        for loop in self.loops.values():
            await loop.setup()

    async def steps(self, n: int, dt: float = 5.0) -> None:
        for _ in range(n):
            self.now += dt
            for loop in self.loops.values():
                await loop.step()

    def statuses(self) -> dict[str, ContextStatus]:
        return {name: loop.status for name, loop in self.loops.items()}

    def scrape(self) -> bytes:
        return self.metrics.render(self.statuses())


async def test_names_labels_and_types_match_the_design(tmp_path: Path) -> None:
    rig = SimRig(tmp_path)
    await rig.start()
    await rig.steps(3)
    text = rig.scrape()
    samples = parse(text)
    for name, label_names in DESIGN_SAMPLES.items():
        assert name in samples, f"{name} missing"
        for sample in samples[name]:
            assert set(sample.labels) == label_names, (name, sample.labels)
    family_types = types(text)
    for family, kind in DESIGN_TYPES.items():
        assert family_types[family] == kind
    assert all(name.startswith("damond_") for name in samples)
    assert value(samples, "damond_build_info") == 1
    build = samples["damond_build_info"][0].labels
    assert build == {
        "version": __version__,
        "backend": "simulated",
        "kernel": rig.backend.kernel_version(),
    }
    features = {s.labels["feature"]: s.value for s in samples["damond_kernel_feature_supported"]}
    assert features == {k: float(v) for k, v in rig.backend.features().items()}


async def test_values_follow_the_loops_and_ratios_are_fractions(tmp_path: Path) -> None:
    rig = SimRig(tmp_path)
    await rig.start()
    await rig.steps(6)
    samples = parse(rig.scrape())
    for name, loop in rig.loops.items():
        status = loop.status
        assert status.snapshot is not None and status.metric_bp is not None
        goal = {"context": name, "goal_metric": "node_target_mem_bp", "node": str(status.goal_node)}
        current = value(samples, "damond_goal_current_ratio", **goal)
        target = value(samples, "damond_goal_target_ratio", **goal)
        assert 0 <= current <= 1 and 0 <= target <= 1
        assert current == status.metric_bp / 10_000
        assert target == loop.cfg.goal.target_bp / 10_000
        assert value(samples, "damond_quota_bytes", context=name) == status.quota_bytes
        assert (
            value(samples, "damond_quota_effective_bytes", context=name)
            == status.snapshot.effective_quota_bytes
        )
        for node, size in status.snapshot.eligible_bytes.items():
            assert (
                value(samples, "damond_node_eligible_bytes", context=name, node=str(node)) == size
            )
        stats = status.snapshot.stats
        assert value(samples, "damond_scheme_tried_bytes_total", context=name) == stats.sz_tried
        assert value(samples, "damond_scheme_applied_bytes_total", context=name) == stats.sz_applied
        assert value(samples, "damond_scheme_quota_exceeds_total", context=name) == stats.qt_exceeds
        assert value(samples, "damond_context_up", context=name) == 1
        assert value(samples, "damond_control_iteration_seconds_count", context=name) == 6
    # the seed's scenario migrates: the counters are not trivially zero
    assert value(samples, "damond_scheme_applied_bytes_total", context="node0") > 0
    capacity = {c.id: c.capacity_bytes for c in rig.settings.simulation.nodes}
    for node, size in capacity.items():
        assert value(samples, "damond_node_capacity_bytes", node=str(node)) == size


async def test_counters_never_go_backwards_across_a_context_restart(tmp_path: Path) -> None:
    rig = SimRig(tmp_path)
    await rig.start()
    await rig.steps(6)
    loop = rig.loops["node0"]
    before = parse(rig.scrape())
    applied_before = value(before, "damond_scheme_applied_bytes_total", context="node0")
    tried_before = value(before, "damond_scheme_tried_bytes_total", context="node0")
    assert applied_before > 0
    # the kdamond context restarts: the backend's cumulative stats start again
    await loop.teardown()
    await loop.setup()
    await rig.steps(1)
    assert loop.status.snapshot is not None
    assert loop.status.snapshot.stats.sz_tried < tried_before
    after = parse(rig.scrape())
    applied_after = value(after, "damond_scheme_applied_bytes_total", context="node0")
    tried_after = value(after, "damond_scheme_tried_bytes_total", context="node0")
    assert applied_after >= applied_before
    assert tried_after == tried_before + loop.status.snapshot.stats.sz_tried


def _status_with(stats: SchemeStats) -> ContextStatus:
    status = ContextStatus("c", "node_target_mem_bp", 0, 5000)
    status.snapshot = Snapshot(
        time_s=0.0,
        eligible_bytes={0: 1},
        capacity_bytes={0: 2},
        stats=stats,
        quota_bytes=1,
        effective_quota_bytes=1,
        running=True,
    )
    return status


@pytest.mark.parametrize(
    ("raw", "exported"),
    [
        ([100, 150, 20, 50], [100, 150, 170, 200]),  # one reset
        ([100, 0, 0, 30, 10], [100, 100, 100, 130, 140]),  # reset, idle, reset again
        ([0, 0, 5], [0, 0, 5]),  # no reset
    ],
)
def test_counter_offsets(tmp_path: Path, raw: list[int], exported: list[int]) -> None:
    metrics = DaemonMetrics(SimBackend(SimulationConfig(), (), lambda: 0.0), mqtt_enabled=False)
    for sz_applied, expected in zip(raw, exported, strict=True):
        status = _status_with(SchemeStats(sz_applied=sz_applied, qt_exceeds=sz_applied // 10))
        metrics(status, 0.001)
        samples = parse(metrics.render({"c": status}))
        assert value(samples, "damond_scheme_applied_bytes_total", context="c") == expected
        exceeds = value(samples, "damond_scheme_quota_exceeds_total", context="c")
        assert exceeds == expected // 10


def test_histogram_counts_observed_seconds(tmp_path: Path) -> None:
    metrics = DaemonMetrics(SimBackend(SimulationConfig(), (), lambda: 0.0), mqtt_enabled=False)
    status = _status_with(SchemeStats())
    observed = [0.0002, 0.003, 0.003, 0.2, 7.0]
    for seconds in observed:
        metrics(status, seconds)
    samples = parse(metrics.render({"c": status}))
    for le in ITERATION_BUCKETS_S:
        expected = sum(1 for s in observed if s <= le)
        bucket = value(samples, "damond_control_iteration_seconds_bucket", context="c", le=str(le))
        assert bucket == expected, le
    assert value(samples, "damond_control_iteration_seconds_bucket", context="c", le="+Inf") == 5
    assert value(samples, "damond_control_iteration_seconds_count", context="c") == 5
    assert value(samples, "damond_control_iteration_seconds_sum", context="c") == pytest.approx(
        sum(observed)
    )


def test_policy_channel_series_exist_from_the_start_and_follow_reports(tmp_path: Path) -> None:
    metrics = DaemonMetrics(SimBackend(SimulationConfig(), (), lambda: 0.0), mqtt_enabled=False)
    samples = parse(metrics.render({}))
    assert value(samples, "damond_mqtt_connected") == 0
    assert value(samples, "damond_mqtt_enabled") == 0
    assert len(samples["damond_policy_updates_total"]) == 15  # 3 scopes x 5 results
    assert all(s.value == 0 for s in samples["damond_policy_updates_total"])
    assert {s.labels["scope"] for s in samples["damond_policy_generation"]} == {
        "fleet",
        "group",
        "host",
    }
    metrics.mqtt_connected(True)
    metrics.policy_update("host", "applied")
    metrics.policy_update("host", "applied")
    metrics.policy_update("fleet", "rejected")
    metrics.policy_update("group", "superseded")
    metrics.policy_generation("host", 7)
    samples = parse(metrics.render({}))
    assert value(samples, "damond_mqtt_connected") == 1
    assert value(samples, "damond_policy_updates_total", scope="host", result="applied") == 2
    assert value(samples, "damond_policy_updates_total", scope="fleet", result="rejected") == 1
    assert value(samples, "damond_policy_updates_total", scope="group", result="stale") == 0
    assert value(samples, "damond_policy_updates_total", scope="group", result="superseded") == 1
    assert value(samples, "damond_policy_generation", scope="host") == 7
    assert value(samples, "damond_policy_generation", scope="fleet") == 0


async def test_a_failing_context_shows_down_and_its_restarts(tmp_path: Path) -> None:
    """A real supervisor restarts a context whose backend fails; the scrape shows it."""
    settings = Settings(
        interval_s=0.05,
        mqtt={"enabled": False},
        simulation={"faults": [FaultConfig(context="node0", at_s=0.0, count=1).model_dump()]},
    )
    backend = SimBackend(settings.simulation, settings.contexts, lambda: 0.0)
    metrics = DaemonMetrics(backend, mqtt_enabled=False)
    supervisor = Supervisor(settings, backend, [metrics])
    async with asyncio.TaskGroup() as tg:
        tg.create_task(supervisor.run())
        await until(lambda: "node0" in supervisor.statuses)
        node0 = supervisor.statuses["node0"]
        await until(lambda: node0.restarts >= 1)
        during = parse(metrics.render(supervisor.statuses))
        await until(lambda: node0.iterations >= 1)
        after = parse(metrics.render(supervisor.statuses))
        supervisor.stop()
    assert value(during, "damond_context_up", context="node0") == 0
    assert value(during, "damond_context_restarts_total", context="node0") >= 1
    assert value(after, "damond_context_up", context="node0") == 1
    assert value(after, "damond_context_restarts_total", context="node0") == 1
    assert value(after, "damond_context_restarts_total", context="node1") == 0


async def test_removed_contexts_disappear_from_the_scrape(tmp_path: Path) -> None:
    rig = SimRig(tmp_path)
    await rig.start()
    await rig.steps(2)
    statuses = rig.statuses()
    del statuses["node1"]
    samples = parse(rig.metrics.render(statuses))
    contexts = {s.labels["context"] for s in samples["damond_context_up"]}
    assert contexts == {"node0"}
    assert all(s.labels.get("context") != "node1" for series in samples.values() for s in series)


async def test_tiering_counters_are_the_simulated_machines_own(tmp_path: Path) -> None:
    rig = SimRig(tmp_path)
    await rig.start()
    await rig.steps(6)
    samples = parse(rig.scrape())
    migrated = rig.backend.machine.migrated_bytes
    assert migrated > 0
    assert value(samples, "damond_vmstat_numa_pages_migrated_total") == migrated // 4096
    # the host's /proc/vmstat is not the simulated machine's
    assert "damond_vmstat_pgpromote_success_total" not in samples
    assert not any("nr_free_pages" in name for name in samples)


def test_label_values_are_escaped(tmp_path: Path) -> None:
    class OddKernel(SimBackend):
        def kernel_version(self) -> str:
            return 'a "quoted" \\ back\nslash'

    metrics = DaemonMetrics(OddKernel(SimulationConfig(), (), lambda: 0.0), mqtt_enabled=False)
    metrics.policy_update('odd"scope', "applied")
    samples = parse(metrics.render({}))
    assert samples["damond_build_info"][0].labels["kernel"] == 'a "quoted" \\ back\nslash'
    assert value(samples, "damond_policy_updates_total", scope='odd"scope') == 1


def test_docs_list_every_family_with_its_type_and_labels() -> None:
    """docs/metrics.md is the contract: one row per family, as exported."""
    from damond.metrics.families import FAMILIES
    from damond.metrics.rows import ContextHistogram, ContextLabels, ContextNodeFamily

    docs = (Path(__file__).resolve().parent.parent / "docs" / "metrics.md").read_text()
    rows = re.findall(r"^\| `(damond_[^`]+)` \| (\w+) \|([^|]*)\|", docs, re.MULTILINE)
    documented = {name: (kind, set(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}
    exported = {}
    for family in FAMILIES:
        labels = getattr(family, "labels", ())
        names = set(labels.names if isinstance(labels, ContextLabels) else labels)
        if isinstance(family, ContextNodeFamily):
            names.add("node")
        if isinstance(family, ContextHistogram):
            names.add("le")
        kind = getattr(
            family, "kind", "histogram" if isinstance(family, ContextHistogram) else "counter"
        )
        exported[family.name.replace("{}", "<counter>")] = (kind, names)
    assert documented == exported


def test_held_contexts_say_why(tmp_path: Path) -> None:
    metrics = DaemonMetrics(SimBackend(SimulationConfig(), (), lambda: 0.0), mqtt_enabled=False)
    acting = ContextStatus("acting", "node_target_mem_bp", 0, 6000)
    held = ContextStatus("held", "node_target_mem_bp", 1, 4000, held=True, held_reason="conflict")
    samples = parse(metrics.render({"acting": acting, "held": held}))
    assert value(samples, "damond_context_held", context="held", reason="conflict") == 1
    assert value(samples, "damond_context_held", context="acting", reason="") == 0
