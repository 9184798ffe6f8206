"""``systemd/damond.service`` passes ``systemd-analyze verify`` and ``security``.

Both need the ``systemd-analyze`` binary (Debian's ``systemd`` package, which
works without systemd as PID 1). In CI a missing binary is a failure.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.tools import require_binary

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "damond.service"
MAX_EXPOSURE = 2.5
SHIPPED_EXEC = "/opt/damond/bin/damond"


def systemd_analyze() -> str:
    return require_binary("systemd-analyze", "systemd")


def directives(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit file, every value of repeated keys kept."""
    out: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key, []).append(value)
    return out


def test_unit_declares_the_service_contract() -> None:
    unit = directives(UNIT.read_text())
    assert unit["Type"] == ["notify"]
    assert unit["NotifyAccess"] == ["main"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["WatchdogSec"] == ["30s"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["ExecStart"][0].startswith(SHIPPED_EXEC + " run")
    assert unit["StateDirectory"] == ["damond"]
    assert unit["ProtectSystem"] == ["strict"]
    assert "-/sys/kernel/mm/damon" in unit["ReadWritePaths"]
    assert unit["CapabilityBoundingSet"] == [""]


def test_verify_passes(tmp_path: Path) -> None:
    tool = systemd_analyze()
    # verify checks that ExecStart exists: point it at this checkout's damond script.
    script = Path(sys.executable).parent / "damond"
    assert script.exists(), f"{script}: install the package (pip install -e .)"
    text = UNIT.read_text()
    assert SHIPPED_EXEC in text
    unit = tmp_path / "damond.service"
    unit.write_text(text.replace(SHIPPED_EXEC, str(script)))
    result = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "damond.service" not in result.stderr, result.stderr  # no warnings about it


def test_security_exposure_at_most_2_5() -> None:
    tool = systemd_analyze()
    result = subprocess.run(
        [tool, "security", "--offline=true", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"Overall exposure level for damond\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout
    exposure = float(match.group(1))
    print(f"systemd-analyze security exposure: {exposure}")
    assert exposure <= MAX_EXPOSURE, result.stdout
