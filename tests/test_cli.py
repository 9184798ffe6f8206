"""The real ``damond`` script: exit codes and exact messages."""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import DAMOND, damond_env, run_cli

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
    assert out[0] == "config: ok (2 contexts) from the embedded default"
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
        assert set(ctx) >= {
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


def test_help_is_plain_text_and_every_option_says_what_it_does() -> None:
    from damond import cli

    for args in (["--help"], ["run", "--help"], ["check", "--help"], ["simulate", "--help"]):
        result = run_cli(*args, timeout=20)
        assert result.returncode == 0
        assert "``" not in result.stdout and ":mod:" not in result.stdout
        assert "exit codes:" in result.stdout and "3  this host cannot run damond" in (
            result.stdout
        )
    parsers = [cli._parser()]
    while parsers:
        parser = parsers.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers += list(action.choices.values())
            else:
                assert action.help, f"{parser.prog} {action.option_strings}: no help text"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "--interval", "-1"], "--interval: must be greater than 0, got -1.0"),
        (
            ["policy", "status", "--broker", "foo:bar"],
            "--broker (port): input should be a valid integer, unable to parse string as an "
            "integer, got 'bar'",
        ),
    ],
)
def test_a_bad_flag_value_is_named_by_its_flag(args: list[str], message: str) -> None:
    result = run_cli(*args, timeout=20)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "damond: invalid configuration (1 error):",
        f"  {message}",
    ]


def test_the_same_value_from_the_file_is_named_by_its_field(tmp_path: Path) -> None:
    result = run_cli("check", "-c", config(tmp_path, "interval_s = -1\n"), timeout=20)
    assert result.returncode == 2
    assert "  interval_s: must be greater than 0, got -1.0" in result.stderr.splitlines()


def test_check_names_the_file_it_loaded(tmp_path: Path) -> None:
    path = config(tmp_path, ONE_CONTEXT.format(name="a", node=0, target=100))
    result = run_cli("check", "-c", path, timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"config: ok (1 contexts) from {path}"


def test_simulate_refuses_a_backend_flag() -> None:
    result = run_cli("simulate", "--backend", "sysfs", "--duration", "10", timeout=20)
    assert result.returncode == 2
    assert "unrecognized arguments: --backend sysfs" in result.stderr


@pytest.mark.parametrize("command", [["check"], ["--help"], ["simulate", "--duration", "30"]])
def test_a_reader_that_closes_the_pipe_gets_no_traceback(command: list[str]) -> None:
    proc = subprocess.Popen(
        [DAMOND, *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=damond_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the command has written anything: every write fails
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr


def test_unknown_variables_are_warned_about_top_level_and_nested_alike() -> None:
    env = damond_env(DAMOND_INTERVAL="2", DAMOND_MQTT__PROT="1884", DAMOND_LOG_LEVEL="DEBUG")
    result = run_cli("check", env=env, timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[:2] == [
        "damond: warning: DAMOND_INTERVAL: not a damond setting, ignored; "
        "did you mean DAMOND_INTERVAL_S?",
        "damond: warning: DAMOND_MQTT__PROT: not a damond setting, ignored; "
        "did you mean DAMOND_MQTT__PORT?",
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "[{broken",
            "DAMOND_CONTEXTS: not valid JSON (Expecting property name enclosed in double "
            "quotes: line 1 column 3 (char 2))",
        ),
        ("[]", "contexts: no contexts configured; damond would have nothing to do"),
    ],
    ids=["broken-json", "empty"],
)
@pytest.mark.parametrize("command", ["run", "check"])
def test_unusable_contexts_variable_exits_2(command: str, value: str, message: str) -> None:
    result = run_cli(command, env=damond_env(DAMOND_CONTEXTS=value), timeout=20)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "damond: invalid configuration (1 error):",
        f"  {message}",
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"interval_s = 1.0\n# caf\xe9\n", "not valid UTF-8 (byte 22: invalid continuation byte)"),
        (b"a = " + b"[" * 10_000 + b"]" * 10_000 + b"\n", "invalid TOML: nested too deeply"),
    ],
    ids=["invalid-utf8", "deeply-nested"],
)
@pytest.mark.parametrize("command", ["run", "check"])
def test_an_unreadable_file_exits_2(
    tmp_path: Path, command: str, content: bytes, message: str
) -> None:
    path = tmp_path / "damond.toml"
    path.write_bytes(content)
    result = run_cli(command, "-c", str(path), timeout=30)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "damond: invalid configuration (1 error):",
        f"  config file {path}: {message}",
    ]


def test_policy_commands_take_no_daemon_flags() -> None:
    for flag in ("--backend", "--interval", "--state-dir", "--log-level"):
        result = run_cli("policy", "status", flag, "x", timeout=20)
        assert result.returncode == 2
        assert f"unrecognized arguments: {flag} x" in result.stderr
