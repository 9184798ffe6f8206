"""The real daemon (``python -m damond run``) against broker outages and crashes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from damond.policy.store import STATE_FILE
from tests.mqtt_policy.support import Broker, Daemon, Watcher, daemon_toml
from tests.tools import free_port

ACK = "damond/hosts/h1/ack"
ONLINE = "damond/hosts/h1/online"
HOST_POLICY = "damond/hosts/h1/policy"


UNAVAILABLE = (
    "mqtt broker unavailable; contexts run on the last accepted policy, retrying in the background"
)


async def wait_event(daemon: Daemon, name: str, **match: object) -> dict[str, Any]:
    return await asyncio.to_thread(daemon.wait_event, name, 15.0, **match)


async def test_policy_after_a_broker_restart_applies_within_5s(
    broker: Broker, tmp_path: Path
) -> None:
    daemon = Daemon(tmp_path, daemon_toml(tmp_path / "state", broker.port))
    daemon.start()
    try:
        await wait_event(daemon, "mqtt connected")
        broker.kill()
        await wait_event(
            daemon,
            UNAVAILABLE,
        )
        await asyncio.sleep(0.5)
        broker.start()
        async with Watcher(broker.port, ACK) as w:
            doc = {"id": "after", "generation": 1, "contexts": {"node0": {"target_bp": 5100}}}
            started = time.monotonic()
            await w.publish(HOST_POLICY, doc, retain=True)
            ack = await w.next(ACK, wait_s=5.0)
            elapsed = time.monotonic() - started
        assert (ack["id"], ack["status"]) == ("after", "applied")
        assert elapsed < 5.0
        await wait_event(daemon, "context reconfigured", context="node0", target_bp=5100)
        assert daemon.alive()
    finally:
        assert daemon.stop() == 0


async def test_kill9_after_an_applied_ack_then_restart_without_broker(
    broker: Broker, tmp_path: Path
) -> None:
    toml = daemon_toml(tmp_path / "state", broker.port)
    daemon = Daemon(tmp_path, toml, "first")
    daemon.start()
    async with Watcher(broker.port, ACK, ONLINE) as w:
        while await w.next(ONLINE) is not True:
            pass
        doc = {
            "id": "keep",
            "generation": 3,
            "contexts": {"node1": {"target_bp": 3300, "enabled": False}},
        }
        await w.publish(HOST_POLICY, doc)
        ack = await w.next(ACK)
        daemon.kill9()
        assert (ack["id"], ack["status"]) == ("keep", "applied")
        # the broker sends the last will for the killed daemon
        assert await w.next(ONLINE) is False
    broker.kill()
    again = Daemon(tmp_path, toml, "second")
    again.start()
    try:
        loaded = await wait_event(again, "persisted policies loaded")
        assert loaded["generations"] == {"fleet": None, "group": None, "host": 3}
        first = await wait_event(again, "first iteration", context="node1")
        assert first["target_bp"] == 3300
        await wait_event(
            again,
            UNAVAILABLE,
        )
        assert again.alive()
    finally:
        assert again.stop() == 0


async def test_without_a_broker_the_daemon_runs_and_logs_once(tmp_path: Path) -> None:
    daemon = Daemon(
        tmp_path, daemon_toml(tmp_path / "state", free_port(), {"reconnect_max_s": 0.3})
    )
    daemon.start()
    try:
        await wait_event(daemon, "first iteration", context="node0")
        await asyncio.sleep(3.0)
        assert daemon.alive()
        warnings = [e for e in daemon.events() if e.get("level") in ("warning", "error")]
        assert len(warnings) == 1, warnings
        assert warnings[0]["error"].endswith("Connection refused")
    finally:
        assert daemon.stop() == 0


async def test_a_corrupt_state_file_is_moved_aside(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / STATE_FILE).write_text('{"format": 1, "scopes": {"host": ')
    daemon = Daemon(tmp_path, daemon_toml(state, free_port()))
    daemon.start()
    try:
        event = await wait_event(daemon, "policy state file unusable; moved aside")
        assert event["level"] == "error"
        aside = Path(str(event["moved_to"]))
        assert await asyncio.to_thread(aside.read_text) == '{"format": 1, "scopes": {"host": '
        assert not (state / STATE_FILE).exists()
        first = await wait_event(daemon, "first iteration", context="node0")
        assert first["target_bp"] == 6000
    finally:
        assert daemon.stop() == 0


async def test_an_unusable_policy_key_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pub"
    bad.write_text("not a key")
    daemon = Daemon(
        tmp_path, daemon_toml(tmp_path / "state", free_port(), {"policy_keys": [str(bad)]})
    )
    daemon.start()
    assert daemon.proc is not None
    assert await asyncio.to_thread(daemon.proc.wait, 30) == 2
    log = daemon.log_path.read_text()
    assert f"mqtt.policy_keys[0]: {bad}: not a PEM public key" in log


def test_check_lists_every_unusable_mqtt_file(tmp_path: Path) -> None:
    bad_key = tmp_path / "key.pem"
    bad_key.write_text("not a key\n")
    missing_password = tmp_path / "absent-password"
    config = tmp_path / "damond.toml"
    config.write_text(
        daemon_toml(
            tmp_path / "state",
            1883,
            {
                "policy_keys": [bad_key],
                "username": "h1",
                "password_file": missing_password,
            },
        )
    )
    check = subprocess.run(
        [sys.executable, "-m", "damond", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 2, check.stdout
    assert "invalid configuration (2 errors)" in check.stderr
    assert f"mqtt.policy_keys[0]: {bad_key}: not a PEM public key" in check.stderr
    assert f"mqtt.password_file {missing_password}: cannot read: No such file" in check.stderr
