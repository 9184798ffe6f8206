"""What the host refuses (exit 3) and what a plain start prints: the real ``damond``
script against a fake DAMON tree, a port in use, an unusable state dir."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DAMOND, damond_env, run_cli
from tests.fakedamon import make_machine
from tests.tools import free_port, require_binary

NOBODY = "65534"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A temp dir that another user can traverse (pytest's own is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="damond-host-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="switches to user nobody, which needs root")
def test_no_permission_on_the_damon_tree_exits_3_and_says_run_as_root(shared_dir: Path) -> None:
    setpriv = require_binary("setpriv", "util-linux")
    m, _ = make_machine(shared_dir / "root", "7.2")
    for path in m.admin.rglob("*"):
        if path.is_file():
            path.chmod(0o600)  # as the kernel's: root only
    state = shared_dir / "state"
    state.mkdir(mode=0o777)
    state.chmod(0o777)
    config = shared_dir / "damond.toml"
    config.write_text(
        f"""backend = "sysfs"
state_dir = "{state}"
{m.sysfs_toml()}[[contexts]]
name = "pull"
node = 1
scheme = {{ target_nid = 0 }}
goal = {{ nid = 0, target_bp = 6000 }}
"""
    )
    config.chmod(0o644)
    as_nobody = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    for command in ("check", "run"):
        result = subprocess.run(
            [*as_nobody, DAMOND, command, "-c", str(config)],
            capture_output=True,
            text=True,
            env=damond_env(),
            timeout=60,
            check=False,
        )
        assert result.returncode == 3, result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("damond: cannot run here: ")
        assert "EACCES (Permission denied)" in last and "run as root" in last
        assert "Traceback" not in result.stderr


def test_check_finds_the_metrics_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = damond_env(DAMOND_METRICS__ENABLED="true", DAMOND_METRICS__LISTEN=f"127.0.0.1:{port}")
        result = run_cli("check", env=env, timeout=30)
    assert result.returncode == 3
    assert result.stderr.splitlines() == [
        f"damond: cannot run here: metrics.listen: 127.0.0.1:{port} is in use by another process"
    ]
    assert result.stdout == ""


def test_check_finds_an_unusable_state_dir(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "state"
    not_a_dir.write_text("")
    env = damond_env(
        DAMOND_STATE_DIR=str(not_a_dir),
        DAMOND_MQTT__HOST="127.0.0.1",  # the policy channel keeps its policies there
        DAMOND_MQTT__ENABLED="true",
    )
    result = run_cli("check", env=env, timeout=30)
    assert result.returncode == 3
    assert result.stderr.splitlines() == [
        f"damond: cannot run here: state_dir: {not_a_dir} is not a directory"
    ]


def test_quick_start_runs_without_a_warning_and_says_the_policy_channel_is_off(
    tmp_path: Path,
) -> None:
    """``damond run`` on the embedded default, with only the metrics port moved off 9464."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAMOND_")}
    env["DAMOND_METRICS__LISTEN"] = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [DAMOND, "run"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    assert proc.stdout is not None
    records = []
    for line in proc.stdout:
        records.append(json.loads(line))
        if records[-1]["event"] == "ready":
            proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert [r for r in records if r["level"] not in ("info", "debug")] == []
    assert records[0]["event"] == "policy channel off"


def test_run_logs_each_unknown_variable() -> None:
    proc = subprocess.Popen(
        [DAMOND, "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=damond_env(DAMOND_INTERVAL="2"),
    )
    assert proc.stdout is not None
    records = []
    for line in proc.stdout:
        records.append(json.loads(line))
        if records[-1]["event"] == "ready":
            proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    [warning] = [r for r in records if r["level"] == "warning"]
    assert warning["event"] == "unknown environment variable ignored"
    assert warning["detail"] == (
        "DAMOND_INTERVAL: not a damond setting, ignored; did you mean DAMOND_INTERVAL_S?"
    )


def test_check_refuses_a_quota_the_hosts_node_cannot_hold(tmp_path: Path) -> None:
    """On a real host the capacities are the host's; the fake tree's node 1 has 1 GiB."""
    m, _ = make_machine(tmp_path / "root", "7.2")
    config = tmp_path / "damond.toml"
    config.write_text(
        f"""backend = "sysfs"
state_dir = "{tmp_path / "state"}"
{m.sysfs_toml()}[[contexts]]
name = "pull"
node = 1
scheme = {{ target_nid = 0, quota = {{ max_bytes = 999999999999999 }} }}
goal = {{ nid = 0, target_bp = 6000 }}
"""
    )
    result = run_cli("check", "-c", str(config), timeout=30)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()[1:]
    assert line.startswith(
        "  contexts[0].scheme.quota.max_bytes: must not exceed the capacity of node 1 ("
    )
    assert line.endswith(" bytes), got 999999999999999")
