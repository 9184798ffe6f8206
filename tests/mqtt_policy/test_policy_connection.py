"""The daemon's MQTT session against a real mosquitto: the packet size it accepts,
how soon it is back after an outage, who it is (host ids) and what it does when
another daemon claims the same one."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.mqtt_policy.support import Broker, Daemon, Watcher, daemon_toml

ACK = "damond/hosts/h1/ack"
HOST_POLICY = "damond/hosts/h1/policy"
FLEET_POLICY = "damond/fleet/policy"
TAKEN_OVER = (
    "mqtt session taken over by another client with this client id; is another damond running "
    "with the same mqtt.host_id? Give each host its own host_id; retrying later"
)
TWIN = (
    "another damond publishes as this host: two daemons share mqtt.host_id; give each host its "
    "own host_id"
)


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/<pid>/status")


async def test_a_huge_payload_never_reaches_the_daemon(broker: Broker, tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, daemon_toml(tmp_path / "state", broker.port))
    daemon.start()
    try:
        await asyncio.to_thread(daemon.wait_event, "mqtt connected")
        await asyncio.sleep(1.0)
        assert daemon.proc is not None
        before = peak_rss_kib(daemon.proc.pid)
        async with Watcher(broker.port, ACK) as w:
            await w.publish(
                FLEET_POLICY, b'{"id": "huge", "generation": 1, "x": "' + b"a" * (12 << 20)
            )
            doc = {"id": "next", "generation": 2, "contexts": {"node0": {"target_bp": 5200}}}
            await w.publish(FLEET_POLICY, doc)
            ack = await w.next(ACK)
        assert (ack["id"], ack["status"]) == ("next", "applied")
        grown = peak_rss_kib(daemon.proc.pid) - before
        assert grown < 4 * 1024, f"peak RSS grew by {grown} KiB"
        assert daemon.alive()
    finally:
        assert daemon.stop() == 0


async def test_a_policy_sent_when_the_broker_returns_applies_within_5s(
    broker: Broker, tmp_path: Path
) -> None:
    """With the default reconnection settings, after a 12 s outage."""
    daemon = Daemon(
        tmp_path, daemon_toml(tmp_path / "state", broker.port, {"reconnect_max_s": 30.0})
    )
    daemon.start()
    try:
        await asyncio.to_thread(daemon.wait_event, "mqtt connected")
        broker.kill()
        await asyncio.sleep(12.0)
        broker.start()
        async with Watcher(broker.port, ACK) as w:
            doc = {"id": "back", "generation": 1, "contexts": {"node0": {"target_bp": 5100}}}
            started = time.monotonic()
            await w.publish(HOST_POLICY, doc, retain=True)
            ack = await w.next(ACK, wait_s=5.0)
            elapsed = time.monotonic() - started
        assert (ack["id"], ack["status"], elapsed < 5.0) == ("back", "applied", True)
    finally:
        assert daemon.stop() == 0


async def test_two_daemons_with_one_host_id_back_off_and_say_why(
    broker: Broker, tmp_path: Path
) -> None:
    toml = daemon_toml(tmp_path / "a", broker.port, {"reconnect_max_s": 30.0})
    first = Daemon(tmp_path, toml, name="first")
    second = Daemon(tmp_path, toml.replace(str(tmp_path / "a"), str(tmp_path / "b")), name="second")
    first.start()
    try:
        await asyncio.to_thread(first.wait_event, "mqtt connected")
        second.start()
        await asyncio.to_thread(second.wait_event, "mqtt connected")
        deadline = time.monotonic() + 15
        while not (
            said := [e for d in (first, second) for e in d.events() if e.get("event") == TAKEN_OVER]
        ):
            assert time.monotonic() < deadline, "neither daemon said why it lost its session"
            await asyncio.sleep(0.1)
        assert (said[0]["level"], said[0]["client_id"]) == ("error", "damond-h1")
        await asyncio.sleep(6.0)
        connects = [
            len([e for e in d.events() if e.get("event") == "mqtt connected"])
            for d in (first, second)
        ]
        assert max(connects) <= 3, f"the two keep knocking each other off: {connects} connects"
    finally:
        assert second.stop() == 0
        assert first.stop() == 0


async def test_a_second_daemon_under_another_client_id_is_named(
    broker: Broker, tmp_path: Path
) -> None:
    first = Daemon(tmp_path, daemon_toml(tmp_path / "a", broker.port), name="first")
    second = Daemon(
        tmp_path,
        daemon_toml(tmp_path / "b", broker.port, {"client_id": "h1-spare"}),
        name="second",
    )
    first.start()
    try:
        await asyncio.to_thread(first.wait_event, "mqtt connected")
        second.start()
        event = await asyncio.to_thread(first.wait_event, TWIN)
        assert (event["host_id"], event["other_client_id"]) == ("h1", "h1-spare")
        event = await asyncio.to_thread(second.wait_event, TWIN)
        assert event["other_client_id"] == "damond-h1"
    finally:
        assert second.stop() == 0
        assert first.stop() == 0


@pytest.mark.parametrize(
    ("host_id", "shown"),
    [
        (b"h\t1", "'h\\t1'"),
        (b"h\x7f", "'h\\x7f'"),
        (b"h\xc2\x85", "'h\\x85'"),
        (b"h\xe2\x80\xa8", "'h\\u2028'"),
        (b"h/1", "'h/1'"),
        (b"h+", "'h+'"),
        (b"#", "'#'"),
        (b"h\xff", "'h\\udcff'"),
    ],
)
def test_an_unusable_host_id_is_a_config_error(host_id: bytes, shown: str) -> None:
    env = {k: v for k, v in os.environb.items() if not k.startswith(b"DAMOND_")}
    env[b"DAMOND_MQTT__HOST"] = b"127.0.0.1"
    env[b"DAMOND_MQTT__HOST_ID"] = host_id
    done = subprocess.run(
        [sys.executable, "-m", "damond", "check"], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 2, done.stderr.decode(errors="replace")
    assert b"Traceback" not in done.stderr
    assert (
        "mqtt.host_id: must be 1-128 printable characters (valid UTF-8) without '/', '+' or '#' "
        f"(one MQTT topic level), got {shown}"
    ) in done.stderr.decode()
