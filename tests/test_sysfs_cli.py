"""``damond check`` with the sysfs backend: the feature table, and refusals (exit 3)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from damond import cli
from damond.backend.sysfs import backend as sysfs_backend
from tests.fakedamon import FakeKernel, FakeMachine, dump, make_machine


def write_config(path: Path, m: FakeMachine, state_dir: Path, mode: str = "daemon") -> Path:
    path.write_text(
        f"""backend = "sysfs"
state_dir = "{state_dir}"

{m.sysfs_toml()}
[[contexts]]
name = "pull"
node = 1
mode = "{mode}"
scheme = {{ target_nid = 0 }}
goal = {{ metric = "node_eligible_mem_bp", nid = 0, target_bp = 6000 }}
"""
    )
    return path


def run_check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "damond", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_refuses_foreign_kdamond_and_writes_nothing(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path / "root", "6.18")
    pid = k.start_foreign()
    before = dump(m.root)
    result = run_check(write_config(tmp_path / "d.toml", m, tmp_path / "state"))
    assert result.returncode == 3, result.stderr
    assert f"foreign kdamond runs: kdamond 0 (pid {pid})" in result.stderr
    assert "echo off >" in result.stderr and "damond wrote nothing" in result.stderr
    assert dump(m.root) == before
    assert not (tmp_path / "state").exists()


def test_check_refuses_damon_stat(tmp_path: Path) -> None:
    m, _ = make_machine(tmp_path / "root", "7.2")
    m.set_module("damon_stat", True)
    before = dump(m.root)
    result = run_check(write_config(tmp_path / "d.toml", m, tmp_path / "state"))
    assert result.returncode == 3, result.stderr
    assert "DAMON_STAT (damon_stat) holds DAMON exclusively" in result.stderr
    assert "damon_stat.enabled=N" in result.stderr
    assert dump(m.root) == before


def test_check_without_damon_sysfs_is_refused(tmp_path: Path) -> None:
    m, _ = make_machine(tmp_path / "root", "7.2")
    (m.admin / "kdamonds/nr_kdamonds").unlink()
    result = run_check(write_config(tmp_path / "d.toml", m, tmp_path / "state"))
    assert result.returncode == 3
    assert "CONFIG_DAMON_SYSFS" in result.stderr


@pytest.mark.parametrize(("version", "eligible"), [("7.2", "yes"), ("6.18", "no")])
def test_check_prints_kernel_and_feature_table(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    version: str,
    eligible: str,
) -> None:
    m, k = make_machine(tmp_path / "root", version)
    monkeypatch.setattr(sysfs_backend, "SysfsIO", lambda: FakeKernel(m))
    config = write_config(tmp_path / "d.toml", m, tmp_path / "state", mode="kernel")
    assert cli.main(["check", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"kernel: {m.kernel.release}" in out
    assert "backend: sysfs" in out
    line = next(x for x in out.splitlines() if "node_eligible_mem_bp" in x)
    assert line.split()[-1] == eligible
    assert k.read(m.admin / "kdamonds/nr_kdamonds") == "0"  # check leaves the tree as found


def test_check_refuses_native_mode_on_6_18(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    m, k = make_machine(tmp_path / "root", "6.18")
    monkeypatch.setattr(sysfs_backend, "SysfsIO", lambda: FakeKernel(m))
    config = write_config(tmp_path / "d.toml", m, tmp_path / "state", mode="native")
    assert cli.main(["check", "-c", str(config)]) == 3
    assert "mode native needs" in capsys.readouterr().err
    assert k.read(m.admin / "kdamonds/nr_kdamonds") == "0"
