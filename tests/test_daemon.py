"""``damond run`` as a real subprocess: start-up, shutdown, supervision, logging."""

from __future__ import annotations

import itertools
import os
import pty
import select
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.conftest import DAMOND, damond_env


def first_iteration(line: dict[str, Any]) -> bool:
    return bool(line.get("event") == "first iteration")


def test_up_within_2s_and_exits_0_within_5s_of_sigterm(daemon: Any) -> None:
    started = time.monotonic()
    proc, logs = daemon()
    logs.wait_for(first_iteration, timeout=10)
    up_after = time.monotonic() - started
    assert up_after < 2.0, f"first iteration after {up_after:.2f} s"
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    stop_started = time.monotonic()
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - stop_started < 5.0
    lines = logs.drain()
    assert any(line["event"] == "stopped" for line in lines)


def test_sigint_stops_cleanly(daemon: Any) -> None:
    proc, logs = daemon()
    logs.wait_for(first_iteration, timeout=10)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=5) == 0
    assert proc.stderr is not None
    assert "Traceback" not in proc.stderr.read()


def test_every_context_line_names_its_context(daemon: Any) -> None:
    proc, logs = daemon("--log-level", "debug")
    for name in ("node0", "node1"):
        logs.wait_for(lambda ln, n=name: ln.get("event") == "iteration" and ln["context"] == n, 10)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=5)
    ctx_lines = [ln for ln in logs.drain() if ln["event"] in {"first iteration", "iteration"}]
    assert ctx_lines and all(ln["context"] in {"node0", "node1"} for ln in ctx_lines)
    assert all({"timestamp", "level"} <= set(ln) for ln in ctx_lines)


def test_a_failing_context_backs_off_and_restarts_alone(daemon: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "faults.toml"
    cfg.write_text(
        "[simulation]\nfaults = [{ context = 'node0', at_s = 1, kind = 'raise', count = 3 }]\n"
    )
    proc, logs = daemon("-c", str(cfg), "--log-level", "debug")
    failures = [
        logs.wait_for(
            lambda ln, k=k: (
                ln["event"] == "context loop failed; restarting"
                and ln["context"] == "node0"
                and ln["retry_in_s"] == 0.5 * 2**k
            ),
            timeout=15,
        )
        for k in range(3)
    ]
    assert "injected fault" in failures[0]["exception"]
    # after its backoff node0 iterates again
    logs.wait_for(lambda ln: ln["event"] == "iteration" and ln["context"] == "node0", 15)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
    lines = logs.drain()
    node1_times = [
        datetime.fromisoformat(ln["timestamp"])
        for ln in lines
        if ln.get("context") == "node1" and ln["event"] in {"first iteration", "iteration"}
    ]
    # node1 never missed a beat while node0 was failing: one iteration per second
    assert len(node1_times) >= 5
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(node1_times)]
    assert max(gaps) < 1.5, gaps
    stopped = next(ln for ln in lines if ln["event"] == "stopped")
    assert stopped["iterations"]["node1"] > stopped["iterations"]["node0"]


def test_console_output_on_a_terminal(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [DAMOND, "run"],
        stdout=follower,
        stderr=follower,
        env=damond_env(DAMOND_STATE_DIR=str(tmp_path)),
    )
    os.close(follower)
    out = b""
    deadline = time.monotonic() + 10
    try:
        while b"first iteration" not in out and time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                out += os.read(leader, 4096)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)
        os.close(leader)
    text = out.decode(errors="replace")
    assert "first iteration" in text
    assert not text.lstrip().startswith("{")
    assert "context" in text and "node0" in text


def test_stop_while_a_context_is_in_backoff(daemon: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "faults.toml"
    cfg.write_text(
        "[simulation]\nfaults = [{ context = 'node0', at_s = 0, kind = 'raise', count = 10 }]\n"
    )
    proc, logs = daemon("-c", str(cfg))
    logs.wait_for(lambda ln: ln["event"] == "context loop failed; restarting", 10)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
