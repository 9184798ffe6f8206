"""The kernel's goal metrics beyond the node shares on fake 6.12, 6.18 and 7.2 trees:
which each kernel computes (probed, and shown by ``damond check``), the goal files
``native`` mode writes (metric, node, cgroup, target), and the refusal of a metric
the kernel lacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from damond.backend.sysfs import features as kfeatures
from damond.backend.sysfs.io import Session
from damond.config import ConfigError, ContextConfig, load_settings
from damond.control.translation import build_context
from damond.model import damon as model
from damond.model.errors import EnvironmentRefused
from tests.fakedamon import FakeMachine, dump, make_machine
from tests.sysfs_support import backend

DB = "/system.slice/db.service"
GOAL = "kdamonds/0/contexts/0/schemes/0/quotas/goals/0"


def promote(mode: str, goal: dict[str, Any]) -> dict[str, Any]:
    """Hot pages from node 1 to node 0, towards a goal on node 0."""
    return {"name": "db", "node": 1, "mode": mode, "scheme": {"target_nid": 0}, "goal": goal}


def demote(mode: str, goal: dict[str, Any]) -> dict[str, Any]:
    """Cold pages from node 0 to node 1."""
    scheme = {"target_nid": 1, "action": "migrate_cold"}
    return {"name": "cold", "node": 0, "mode": mode, "scheme": scheme, "goal": goal}


MEMCG_USED = {"metric": "node_memcg_used_bp", "nid": 0, "path": DB, "target_bp": 4000}
MEM_USED = {"metric": "node_mem_used_bp", "nid": 0, "target_bp": 9970}
PSI = {"metric": "some_mem_psi_us", "target_us": 20000}


@pytest.mark.parametrize(
    ("version", "native"),
    [
        ("6.12", {"some_mem_psi_us"}),
        ("6.18", {"some_mem_psi_us", "node_mem_used_bp", "node_mem_free_bp"}),
        (
            "7.2",
            {
                "some_mem_psi_us",
                "node_mem_used_bp",
                "node_mem_free_bp",
                "node_memcg_used_bp",
                "node_memcg_free_bp",
                "active_mem_bp",
                "inactive_mem_bp",
                "node_eligible_mem_bp",
            },
        ),
    ],
)
async def test_probe_finds_the_metrics_each_kernel_computes(
    tmp_path: Path, version: str, native: set[str]
) -> None:
    m, k = make_machine(tmp_path / "root", version)
    b = backend(m, k, tmp_path / "state")
    await b.open()
    table = b.features()
    metrics = {name for name, ok in table.items() if ok and name in set(model.GoalMetric)}
    assert metrics == native
    assert "node_target_mem_bp" not in table  # no kernel has it
    await b.close()


@pytest.mark.parametrize("version", ["6.12", "6.18", "7.2"])
async def test_presence_probe_of_a_goal_less_kdamond_dates_the_metrics_alike(
    tmp_path: Path, version: str
) -> None:
    """A re-adopted daemon-mode kdamond has no goal directory to look at: the goal
    metrics are read off files of the same releases, and agree with the full probe."""
    m, k = make_machine(tmp_path / "root", version)
    b = backend(m, k, tmp_path / "state")
    await b.open()
    await b.start_context(build_context(ContextConfig.model_validate(promote("daemon", MEM_USED))))
    kd = m.admin / "kdamonds/0"
    by_presence = kfeatures.probe_by_presence(Session(k, 1.0), kd)
    assert by_presence.native_metrics() == b._features.native_metrics()
    await b.close()


async def test_native_memcg_goal_writes_metric_node_cgroup_and_target_on_7_2(
    tmp_path: Path,
) -> None:
    m, k = make_machine(tmp_path / "root", "7.2")
    c = promote("native", MEMCG_USED)
    b = backend(m, k, tmp_path / "state", contexts=[c])
    await b.open()
    await b.start_context(build_context(ContextConfig.model_validate(c)))
    g = m.admin / GOAL
    files = ("target_metric", "target_value", "nid", "path")
    assert {f: k.read(g / f) for f in files} == {
        "target_metric": "node_memcg_used_bp",
        "target_value": "4000",
        "nid": "0",
        "path": DB,
    }
    await b.close()


@pytest.mark.parametrize("version", ["6.12", "7.2"])
async def test_native_psi_goal_targets_microseconds_and_writes_no_path(
    tmp_path: Path, version: str
) -> None:
    m, k = make_machine(tmp_path / "root", version)
    c = demote("native", PSI)
    b = backend(m, k, tmp_path / "state", contexts=[c])
    await b.open()
    k.writes.clear()
    await b.start_context(build_context(ContextConfig.model_validate(c)))
    g = m.admin / GOAL
    assert (k.read(g / "target_metric"), k.read(g / "target_value")) == ("some_mem_psi_us", "20000")
    assert not any(p.endswith("/path") for p, _ in k.writes)
    assert (g / "nid").exists() == (version == "7.2")
    await b.close()


async def test_native_node_mem_goal_on_6_18_writes_its_node(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "6.18")
    c = promote("native", MEM_USED)
    b = backend(m, k, tmp_path / "state", contexts=[c])
    await b.open()
    await b.start_context(build_context(ContextConfig.model_validate(c)))
    g = m.admin / GOAL
    assert (k.read(g / "target_metric"), k.read(g / "nid")) == ("node_mem_used_bp", "0")
    assert not (g / "path").exists()
    await b.close()


@pytest.mark.parametrize(
    ("version", "context", "message"),
    [
        (
            "6.18",
            promote("native", MEMCG_USED),
            r"contexts\[0\]\.goal\.metric: mode native needs the kernel's node_memcg_used_bp "
            r"goal metric \(Linux 6\.19\+\), which kernel 6\.18\.44 lacks; use "
            r'mode = "kernel"',
        ),
        (
            "6.12",
            promote("native", MEM_USED),
            r"contexts\[0\]\.goal\.metric: mode native needs the kernel's node_mem_used_bp "
            r"goal metric \(Linux 6\.16\+\), which kernel 6\.12\.117\+deb13-amd64 lacks",
        ),
    ],
)
async def test_native_metric_the_kernel_lacks_is_refused_with_nothing_left(
    tmp_path: Path, version: str, context: dict[str, Any], message: str
) -> None:
    m, k = make_machine(tmp_path / "root", version)
    b = backend(m, k, tmp_path / "state", contexts=[context])
    with pytest.raises(EnvironmentRefused, match=message):
        await b.open()
    assert k.read(m.admin / "kdamonds/nr_kdamonds") == "0"


async def test_kernel_mode_feeds_user_input_for_a_metric_6_12_lacks(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "6.12")
    c = promote("kernel", MEMCG_USED)
    b = backend(m, k, tmp_path / "state", contexts=[c])
    await b.open()
    ctx = build_context(ContextConfig.model_validate(c))
    assert ctx.memory_goal == model.QuotaGoal(model.GoalMetric.NODE_MEMCG_USED_BP, 4000, path=DB)
    await b.start_context(ctx)
    g = m.admin / GOAL
    assert (k.read(g / "target_metric"), k.read(g / "target_value")) == ("user_input", "4000")
    await b.close()


# -- damond check, as its own process -----------------------------------------------------


def write_config(path: Path, m: FakeMachine, state_dir: Path, contexts: str) -> Path:
    path.write_text(f'backend = "sysfs"\nstate_dir = "{state_dir}"\n\n{m.sysfs_toml()}\n{contexts}')
    return path


CONTEXTS = f"""
[[contexts]]
name = "db"
node = 1
mode = "kernel"
scheme = {{ target_nid = 0, filters = [{{ type = "memcg", memcg_path = "{DB}" }}] }}
goal = {{ metric = "node_memcg_used_bp", nid = 0, path = "{DB}", target_bp = 4000 }}

[[contexts]]
name = "cold"
node = 0
scheme = {{ target_nid = 1, action = "migrate_cold" }}
goal = {{ metric = "some_mem_psi_us", target_us = 20000 }}

[[contexts]]
name = "share"
node = 1
mode = "kernel"
scheme = {{ target_nid = 0 }}
goal = {{ metric = "node_target_mem_bp", nid = 0, target_bp = 6000 }}
"""


def check(root: Path, version: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.fake_cli", str(root), version, "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def goal_metric_lines(out: str) -> dict[str, str]:
    lines = out.split("goal metrics:\n", 1)[1].split("contexts:", 1)[0].splitlines()
    return {line.split()[0]: line.split(None, 1)[1] for line in lines if line.strip()}


@pytest.mark.parametrize(
    ("version", "memcg", "psi"),
    [
        ("6.12", "computed by damond", "native"),
        ("6.18", "computed by damond", "native"),
        ("7.2", "native", "native"),
    ],
)
def test_check_says_which_metrics_are_native_and_which_damond_computes(
    tmp_path: Path, version: str, memcg: str, psi: str
) -> None:
    m, _ = make_machine(tmp_path / "root", version)
    before = dump(m.admin)
    config = write_config(tmp_path / "d.toml", m, tmp_path / "state", CONTEXTS)
    result = check(m.root, version, config)
    assert result.returncode == 0, result.stderr
    assert goal_metric_lines(result.stdout) == {
        "node_memcg_used_bp": memcg,
        "node_target_mem_bp": "computed by damond",
        "some_mem_psi_us": psi,
    }
    assert dump(m.admin) == before  # check leaves the tree as it found it


def test_check_refuses_a_native_metric_the_kernel_lacks_with_exit_3(tmp_path: Path) -> None:
    m, _ = make_machine(tmp_path / "root", "6.18")
    before = dump(m.admin)
    native = CONTEXTS.replace('mode = "kernel"', 'mode = "native"', 1)
    config = write_config(tmp_path / "d.toml", m, tmp_path / "state", native)
    result = check(m.root, "6.18", config)
    assert result.returncode == 3, result.stderr
    assert "contexts[0].goal.metric: mode native needs the kernel's node_memcg_used_bp" in (
        result.stderr
    )
    assert dump(m.admin) == before


def test_check_refuses_native_node_target_mem_bp_as_a_config_error(tmp_path: Path) -> None:
    m, _ = make_machine(tmp_path / "root", "7.2")
    native = CONTEXTS.replace(
        'mode = "kernel"\nscheme = { target_nid = 0 }',
        'mode = "native"\nscheme = { target_nid = 0 }',
    )
    config = write_config(tmp_path / "d.toml", m, tmp_path / "state", native)
    result = check(m.root, "7.2", config)
    assert result.returncode == 2, result.stderr
    assert "contexts[2].goal.metric: native mode needs a metric the kernel computes" in (
        result.stderr
    )


@pytest.mark.parametrize(
    ("context", "error"),
    [
        (
            'node = 1\nscheme = { target_nid = 0 }\ngoal = { metric = "some_mem_psi_us", '
            "target_us = 20000 }",
            "contexts[0].goal.metric: native mode needs a goal the scheme raises, because the "
            "kernel's tuner assumes a larger quota raises the metric; moving pages from node 1 "
            'to node 0 lowers some_mem_psi_us: use mode = "kernel" or "daemon"',
        ),
        (
            'node = 0\nscheme = { target_nid = 1 }\ngoal = { metric = "node_mem_free_bp", '
            "nid = 1, target_bp = 50 }",
            "contexts[0].goal.nid: native mode needs the goal on the scheme's source (nid=0) "
            "because the kernel's tuner assumes a larger quota raises the metric, got 1",
        ),
    ],
)
def test_native_goal_the_scheme_lowers_is_a_config_error(
    tmp_path: Path, context: str, error: str
) -> None:
    path = tmp_path / "d.toml"
    path.write_text(f'[[contexts]]\nname = "a"\nmode = "native"\n{context}\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert error in info.value.errors
