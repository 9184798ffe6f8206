"""The real ``damond`` script: exit codes and exact messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import damond_env, run_cli

ONE_CONTEXT = """
[[contexts]]
name = "{name}"
node = {node}
scheme = {{ target_nid = 1 }}
goal = {{ nid = {node}, target_bp = {target} }}
"""


def config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "damond.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "interval_s = 'often'\n",
            "interval_s: input should be a valid number, unable to parse string as a number, "
            "got 'often'",
        ),
        (
            ONE_CONTEXT.format(name="a", node=0, target=12000),
            "contexts[0].goal.target_bp: must be between 0 and 10000, got 12000",
        ),
        (
            ONE_CONTEXT.format(name="a", node=7, target=100),
            "contexts[0].node: unknown node 7, the simulated machine has nodes 0, 1",
        ),
        (
            ONE_CONTEXT.format(name="a", node=0, target=100) * 2,
            "contexts[1].name: duplicate context name 'a' (also contexts[0])",
        ),
        (
            "[metrics]\nlisten = 5\n",
            "metrics.listen: input should be a valid string, got 5",
        ),
    ],
    ids=["wrong-type", "bp-range", "unknown-node", "duplicate-name", "nested-wrong-type"],
)
@pytest.mark.parametrize("command", ["run", "check"])
def test_bad_config_exits_2_with_the_exact_message(
    tmp_path: Path, command: str, text: str, message: str
) -> None:
    result = run_cli(command, "-c", config(tmp_path, text), timeout=20)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("damond: invalid configuration (")
    assert f"  {message}" in lines
    assert result.stdout == ""


def test_missing_file_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    result = run_cli("run", "-c", str(missing), timeout=20)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "damond: invalid configuration (1 error):",
        f"  config file {missing}: not found",
    ]


def test_config_file_from_environment(tmp_path: Path) -> None:
    path = config(tmp_path, ONE_CONTEXT.format(name="a", node=0, target=20000))
    result = run_cli("check", env=damond_env(DAMOND_CONFIG=path), timeout=20)
    assert result.returncode == 2
    assert "  contexts[0].goal.target_bp: must be between 0 and 10000, got 20000" in (
        result.stderr.splitlines()
    )


def test_bad_environment_value_names_the_field() -> None:
    result = run_cli("check", env=damond_env(DAMOND_MQTT__PORT="99999"), timeout=20)
    assert result.returncode == 2
    assert "  mqtt.port: input should be less than or equal to 65535, got '99999'" in (
        result.stderr.splitlines()
    )


def test_unknown_argument_exits_2() -> None:
    result = run_cli("run", "--frobnicate", timeout=20)
    assert result.returncode == 2
    assert "unrecognized arguments: --frobnicate" in result.stderr


def test_check_on_the_simulated_backend_prints_the_feature_table() -> None:
    result = run_cli("check", timeout=20)
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0] == "config: ok (2 contexts)"
    assert out[1] == "backend: simulated"
    assert "  node_eligible_mem_bp     yes" in out


def test_simulate_json_has_the_documented_shape(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    result = run_cli("simulate", "--duration", "300", "--json", str(out), timeout=60)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["duration_s"] == 300
    assert [c["name"] for c in data["contexts"]] == ["node0", "node1"]
    for ctx in data["contexts"]:
        assert set(ctx) == {
            "name",
            "goal_metric",
            "node",
            "target_bp",
            "final_bp",
            "time_to_goal_s",
            "overshoot_bp",
            "migrated_bytes",
            "pingpong_bytes",
        }
        assert abs(ctx["final_bp"] - ctx["target_bp"]) <= 100
        assert isinstance(ctx["time_to_goal_s"], float)
    summary = result.stdout.splitlines()
    assert summary[0] == "simulated 300 s"
    assert summary[2].startswith("node0 ") and summary[3].startswith("node1 ")


def test_simulate_plot_writes_a_png(tmp_path: Path) -> None:
    out = tmp_path / "plot.png"
    result = run_cli("simulate", "--duration", "120", "--plot", str(out), timeout=60)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_plot_without_matplotlib_says_how_to_get_it(tmp_path: Path) -> None:
    blocker = tmp_path / "block"
    (blocker / "matplotlib").mkdir(parents=True)
    (blocker / "matplotlib" / "__init__.py").write_text("raise ImportError('blocked')\n")
    result = run_cli(
        "simulate",
        "--duration",
        "30",
        "--plot",
        str(tmp_path / "p.png"),
        env=damond_env(PYTHONPATH=str(blocker)),
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "damond: --plot needs matplotlib: install it with  pip install 'damond[plot]'"
    )
