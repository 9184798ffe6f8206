"""What the daemon does with its policy files when it starts: leftovers of an
interrupted write are removed, and a saved policy it will not apply is named."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from damond.policy.highwater import HIGH_WATER_FILE
from damond.policy.store import STATE_FILE
from tests.mqtt_policy.support import Broker, Daemon, daemon_toml
from tests.tools import free_port

SAVED = {
    "format": 1,
    "scopes": {
        "host": {
            "group": None,
            "document": {"id": "s", "generation": 2, "contexts": {"node0": {"target_bp": 5100}}},
        }
    },
}


def leave_temp_files(state: Path) -> list[Path]:
    """What a kill -9 in the middle of write_atomic leaves, for both policy files."""
    state.mkdir(parents=True)
    leftovers = [state / f".{STATE_FILE}.k9x2ab.tmp", state / f".{HIGH_WATER_FILE}.q1w2e3.tmp"]
    for path in leftovers:
        path.write_bytes(b'{"format": 1, "sco')
    return leftovers


async def test_temp_files_of_an_interrupted_write_are_removed_at_start(
    broker: Broker, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    leftovers = leave_temp_files(state)
    unrelated = state / ".someone-else.tmp"
    unrelated.write_text("")
    daemon = Daemon(tmp_path, daemon_toml(state, broker.port))
    daemon.start()
    try:
        await asyncio.to_thread(daemon.wait_event, "mqtt connected")
        assert not [p for p in leftovers if p.exists()]
        assert unrelated.exists()
        removed = [
            e["path"]
            for e in daemon.events()
            if e.get("event") == "removed a temp file left by an interrupted write"
        ]
        assert sorted(removed) == sorted(str(p) for p in leftovers)
    finally:
        assert daemon.stop() == 0


async def test_a_saved_policy_with_the_channel_off_is_named_not_applied(tmp_path: Path) -> None:
    state = tmp_path / "state"
    leftovers = leave_temp_files(state)
    (state / STATE_FILE).write_text(json.dumps(SAVED))
    daemon = Daemon(tmp_path, daemon_toml(state, free_port(), {"enabled": False}))
    daemon.start()
    try:
        event = await asyncio.to_thread(
            daemon.wait_event,
            "a saved policy is not applied: the policy channel is off (mqtt.enabled is false, "
            "or no mqtt.host is set); the contexts run as configured",
        )
        assert event["level"] == "warning"
        assert event["path"] == str(state / STATE_FILE)
        first = await asyncio.to_thread(daemon.wait_event, "first iteration", context="node0")
        assert first["target_bp"] == 6000
        assert not [p for p in leftovers if p.exists()]
    finally:
        assert daemon.stop() == 0
