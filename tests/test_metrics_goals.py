"""A goal's labels (metric, node, cgroup) and unit in ``/metrics`` and ``/status``."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from damond.backend.simulated.backend import SimBackend
from damond.config import GoalConfig, SimulationConfig
from damond.control.status import ContextStatus
from damond.metrics.exporter import DaemonMetrics
from damond.metrics.statusdoc import config_only, status_document, status_table

DB = "/system.slice/db.service"
GOALS = {
    "db": GoalConfig(metric="node_memcg_used_bp", nid=0, path=DB, target_bp=4000),
    "stall": GoalConfig(metric="some_mem_psi_us", target_us=20_000),
}


def statuses() -> dict[str, ContextStatus]:
    db = ContextStatus("db", "node_memcg_used_bp", 0, 4000, metric_bp=3900)
    # a stall goal's value is in microseconds; it has no target in basis points
    stall = ContextStatus("stall", "some_mem_psi_us", 0, 0, metric_bp=12_000)
    seed = ContextStatus("seed", "node_target_mem_bp", 1, 4000, metric_bp=4100)
    return {"db": db, "stall": stall, "seed": seed}


def samples() -> dict[str, list[tuple[dict[str, str], float]]]:
    metrics = DaemonMetrics(
        SimBackend(SimulationConfig(), (), lambda: 0.0), mqtt_enabled=False, goals=GOALS.get
    )
    text = metrics.render(statuses()).decode()
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found.setdefault(s.name, []).append((s.labels, s.value))
    return found


def test_goal_labels_name_metric_node_and_cgroup() -> None:
    found = samples()
    assert sorted(found["damond_goal_target_ratio"], key=lambda s: s[0]["context"]) == [
        ({"context": "db", "goal_metric": "node_memcg_used_bp", "node": "0", "cgroup": DB}, 0.4),
        # no goal source for it: what its status says, and no cgroup
        (
            {"context": "seed", "goal_metric": "node_target_mem_bp", "node": "1", "cgroup": ""},
            0.4,
        ),
    ]
    current = dict((s[0]["context"], s[1]) for s in found["damond_goal_current_ratio"])
    assert current == {"db": 0.39, "seed": 0.41}


def test_a_stall_goal_is_in_seconds_not_a_ratio() -> None:
    found = samples()
    stall = {"context": "stall", "goal_metric": "some_mem_psi_us", "node": "", "cgroup": ""}
    assert found["damond_goal_target_seconds"] == [(stall, 0.02)]
    assert found["damond_goal_current_seconds"] == [(stall, 0.012)]
    ratios = found["damond_goal_target_ratio"] + found["damond_goal_current_ratio"]
    assert all(labels["context"] != "stall" for labels, _ in ratios)


def test_status_shows_the_cgroup_and_the_unit() -> None:
    document = status_document(statuses(), config_only, GOALS.get)
    contexts = {c["name"]: c for c in document["contexts"]}
    db, stall = contexts["db"], contexts["stall"]
    assert (db["goal_metric"], db["node"], db["cgroup"]) == ("node_memcg_used_bp", 0, DB)
    assert (db["target_bp"], db["target_us"], db["metric_bp"], db["metric_us"]) == (
        4000,
        None,
        3900,
        None,
    )
    assert (stall["node"], stall["cgroup"]) == (None, None)
    assert (stall["target_bp"], stall["target_us"], stall["metric_bp"], stall["metric_us"]) == (
        None,
        20_000,
        None,
        12_000,
    )
    rows = {
        cells[0]: cells
        for line in status_table(document).splitlines()[1:]
        if (cells := re.split(r"\s{2,}", line))
    }
    assert rows["db"][1:4] == [f"node_memcg_used_bp@0 {DB}", "4000 bp", "config"]
    assert rows["stall"][1:5] == ["some_mem_psi_us", "20000 us", "config", "12000 us"]
