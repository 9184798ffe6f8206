"""The sd_notify protocol over real datagram sockets: abstract names and paths."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from damond.control.status import ContextStatus
from damond.runtime.sdnotify import Notifier, format_message, socket_address, watchdog_period_s
from damond.runtime.service_status import status_line


@pytest.fixture
def abstract_listener() -> Iterator[tuple[str, socket.socket]]:
    name = f"damond-test-{uuid.uuid4().hex[:12]}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    yield "@" + name, sock
    sock.close()


@pytest.fixture
def path_listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()


def test_address_forms() -> None:
    assert socket_address("@name") == b"\0name"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    with pytest.raises(ValueError, match="NOTIFY_SOCKET: not an absolute path"):
        socket_address("relative/notify")
    with pytest.raises(ValueError, match="got '@'"):
        socket_address("@")


def test_message_is_one_assignment_per_line() -> None:
    assert format_message({"READY": 1, "STATUS": "ok"}) == b"READY=1\nSTATUS=ok\n"
    # a newline in a value must not start a forged assignment
    assert format_message({"STATUS": "a\nWATCHDOG=1"}) == b"STATUS=a WATCHDOG=1\n"


@pytest.mark.parametrize("listener", ["abstract_listener", "path_listener"])
def test_every_message_kind_arrives(listener: str, request: pytest.FixtureRequest) -> None:
    address, sock = request.getfixturevalue(listener)
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": address})
    assert notifier.enabled
    assert notifier.ready(status="2/2 contexts up")
    assert sock.recv(4096) == b"READY=1\nSTATUS=2/2 contexts up\n"
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1\n"
    assert notifier.status("reloading config")
    assert sock.recv(4096) == b"STATUS=reloading config\n"
    assert notifier.reloading()
    reloading = sock.recv(4096).decode().splitlines()
    assert reloading[0] == "RELOADING=1"
    key, _, usec = reloading[1].partition("=")
    assert key == "MONOTONIC_USEC"
    now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert now_usec - 2_000_000 < int(usec) <= now_usec
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1\n"
    notifier.close()
    assert not notifier.enabled


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert notifier.ready() is False
    notifier.close()


def test_an_unusable_notify_socket_disables_notifications() -> None:
    # e.g. a vsock address from a newer systemd: damond runs on, without sd_notify
    assert not Notifier.from_environment({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled


def test_a_missing_listener_is_reported_not_raised(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    assert notifier.enabled
    assert notifier.watchdog() is False
    assert notifier.watchdog() is False
    notifier.close()


def test_watchdog_period_is_half_the_timeout() -> None:
    assert watchdog_period_s({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert (
        watchdog_period_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    )
    assert watchdog_period_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_period_s({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_period_s({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_period_s({}) is None


def test_status_line_summarises_contexts_goal_errors_and_mqtt() -> None:
    up = ContextStatus("node0", "node_target_mem_bp", 0, 6000, up=True, metric_bp=6120)
    failing = ContextStatus(
        "node1", "node_target_mem_bp", 1, 4000, metric_bp=3950, last_error="BackendError: x"
    )
    fresh = ContextStatus("spare", "node_eligible_mem_bp", 0, 5000)
    statuses = {s.name: s for s in (up, failing, fresh)}
    assert status_line(statuses, "connected") == (
        "1/3 contexts up; goal error node0 +120 bp, node1 -50 bp; failing node1; mqtt connected"
    )
    assert status_line({}, None) == "0/0 contexts up"
