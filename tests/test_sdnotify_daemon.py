"""The daemon as systemd sees it: READY, WATCHDOG, RELOADING and STOPPING over
a real notification socket, from ``damond run`` in a subprocess."""

from __future__ import annotations

import itertools
import os
import signal
import statistics
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import Daemon, two_contexts


@pytest.fixture
def abstract_socket() -> str:
    return f"@damond-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Started daemons, stopped at the end of the test whatever happened."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_ready_only_after_every_context_completed_its_first_iteration(
    tmp_path: Path, abstract_socket: str, daemons: list[Daemon]
) -> None:
    # node1's first two snapshots fail: its first iteration comes after two backoffs
    # (0.5 s + 1 s), long after node0's.
    config = write_config(
        tmp_path / "damond.toml",
        "interval_s = 0.2\n"
        "[simulation]\n"
        'faults = [{ context = "node1", at_s = 0, kind = "raise", count = 2 }]\n' + two_contexts(),
    )
    daemon = Daemon(config, abstract_socket)
    daemons.append(daemon)
    ready = daemon.wait_message("READY")
    firsts = {line.record["context"]: line for line in daemon.events("first iteration")}
    assert set(firsts) == {"node0", "node1"}
    assert firsts["node1"].t - firsts["node0"].t > 1.0  # node1 really was late
    # the datagram and the log line arrive on different channels: allow for their race
    assert ready.t >= firsts["node1"].t - 0.05
    assert ready.fields["READY"] == "1"
    assert ready.fields["STATUS"].startswith("2/2 contexts up; goal error node0 ")
    assert daemon.messages_with("READY") == [ready]  # once, and nothing before it
    ready_log = daemon.wait_event("ready")
    with daemon._lock:
        order = [line.record.get("event") for line in daemon.logs]
    assert order.index("ready") > max(i for i, e in enumerate(order) if e == "first iteration"), (
        order
    )
    assert ready_log.record["status"] == ready.fields["STATUS"]
    assert daemon.stop() == 0


def test_watchdog_pings_at_half_the_watchdog_period(
    tmp_path: Path, abstract_socket: str, daemons: list[Daemon]
) -> None:
    config = write_config(tmp_path / "damond.toml", "interval_s = 0.2\n" + two_contexts())
    daemon = Daemon(config, abstract_socket, watchdog_usec=600_000)
    daemons.append(daemon)
    daemon.wait_message("WATCHDOG", count=12)
    pings = [m.t for m in daemon.messages_with("WATCHDOG")]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert statistics.median(gaps) == pytest.approx(0.3, abs=0.05), gaps
    assert max(gaps) < 0.6, gaps  # never late enough for systemd to act
    assert all(m.fields == {"WATCHDOG": "1"} for m in daemon.messages_with("WATCHDOG"))
    assert daemon.stop() == 0


def test_no_watchdog_pings_while_a_context_loop_hangs(
    tmp_path: Path, abstract_socket: str, daemons: list[Daemon]
) -> None:
    # node0's snapshots block from 1.5 s on; node1 keeps running.
    config = write_config(
        tmp_path / "damond.toml",
        "interval_s = 0.2\n"
        "[simulation]\n"
        'faults = [{ context = "node0", at_s = 1.5, kind = "hang" }]\n' + two_contexts(),
    )
    daemon = Daemon(config, abstract_socket, watchdog_usec=400_000)
    daemons.append(daemon)
    stuck = daemon.wait_event(
        "context loops stuck; watchdog pings withheld so systemd restarts damond"
    )
    assert stuck.record["contexts"] == ["node0"]
    pings_at_stuck = len(daemon.messages_with("WATCHDOG"))
    assert pings_at_stuck >= 5  # it did ping while the loops were alive
    daemon.wait_until("2 s without pings", lambda: daemon._now() > stuck.t + 2.0)
    assert len(daemon.messages_with("WATCHDOG")) <= pings_at_stuck + 1
    last_ping = daemon.messages_with("WATCHDOG")[-1].t
    # the loop hung at ~1.5 s (+ start-up); pings stopped within the 2 s stuck threshold
    assert last_ping < stuck.t + 0.3
    assert daemon.proc.poll() is None  # still serving node1: systemd decides, not damond
    assert daemon.stop() == 0


def test_reloading_and_ready_around_sighup_and_stopping_on_sigterm(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    # a path socket this time (systemd's usual /run/systemd/notify)
    config = write_config(tmp_path / "damond.toml", "interval_s = 0.2\n" + two_contexts())
    daemon = Daemon(config, str(tmp_path / "notify.sock"))
    daemons.append(daemon)
    daemon.wait_message("READY")
    config.write_text("interval_s = 0.2\n" + two_contexts(node0_target=5000))
    daemon.signal(signal.SIGHUP)
    reloading = daemon.wait_message("RELOADING")
    ready_again = daemon.wait_message("READY", count=2)
    assert reloading.fields["RELOADING"] == "1"
    assert int(reloading.fields["MONOTONIC_USEC"]) > 0
    assert ready_again.t >= reloading.t
    reloaded = daemon.wait_event("configuration reloaded")
    assert reloaded.record["changed"] == ["node0"]

    exit_code = daemon.stop()
    assert exit_code == 0
    stopping = daemon.messages_with("STOPPING")
    assert [m.fields for m in stopping] == [{"STOPPING": "1"}]
    assert stopping[0].t > ready_again.t
    assert daemon.events("stopped"), daemon.log_text()
