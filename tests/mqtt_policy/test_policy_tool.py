"""``damond policy`` as a newcomer meets it: exit codes that say whether the policy is in
force, a push the broker dropped not called retained, ``clear``, and flags that belong."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiomqtt

from tests.mqtt_policy.support import Broker, Daemon, daemon_toml


def damond(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "damond", *args], capture_output=True, text=True, timeout=60
    )


def operator(path: Path, port: int) -> str:
    path.write_text(f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\n')
    return str(path)


def policy(path: Path, pid: str, generation: int) -> str:
    doc = {"id": pid, "generation": generation, "contexts": {"node0": {"target_bp": 5300}}}
    path.write_text(json.dumps(doc))
    return str(path)


async def retained(port: int, topic: str) -> bytes | None:
    """The retained message on ``topic``, None when there is none."""
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe(topic, qos=1)
        try:
            async with asyncio.timeout(1.0):
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    return message.payload
        except TimeoutError:
            return None
    return None


async def test_exit_codes_waiting_and_clear(broker: Broker, tmp_path: Path) -> None:
    cfg = operator(tmp_path / "op.toml", broker.port)
    daemon = Daemon(tmp_path, daemon_toml(tmp_path / "state", broker.port))
    daemon.start()
    try:
        await asyncio.to_thread(daemon.wait_event, "mqtt connected")
        await asyncio.sleep(0.3)
        first = policy(tmp_path / "p2.json", "p2", 2)
        pushed = await asyncio.to_thread(
            damond, "policy", "push", first, "--host", "h1", "-c", cfg, "--timeout", "5"
        )
        assert (pushed.returncode, pushed.stdout) == (0, "h1: applied (scope host, generation 2)\n")
        assert pushed.stderr == "waiting up to 5 s for the acks of h1\n"
        older = policy(tmp_path / "p1.json", "p1", 1)
        stale = await asyncio.to_thread(
            damond, "policy", "push", older, "--host", "h1", "-c", cfg, "--timeout", "5"
        )
        assert stale.returncode == 1, "a policy the host did not apply is a failed push"
        assert stale.stdout.startswith("h1: stale (scope host, generation 1)")
        again = await asyncio.to_thread(
            damond, "policy", "push", first, "--host", "h1", "-c", cfg, "--timeout", "5"
        )
        assert again.returncode == 0 and again.stdout.startswith("h1: duplicate")
    finally:
        assert daemon.stop() == 0

    fleet = await asyncio.to_thread(
        damond, "policy", "push", first, "--fleet", "-c", cfg, "--timeout", "1"
    )
    assert (fleet.returncode, fleet.stdout) == (
        1,
        "no targeted host is online (the fleet); the broker retained the policy and it "
        "applies when they connect\n",
    )
    ghost = await asyncio.to_thread(
        damond, "policy", "push", first, "--host", "ghost", "-c", cfg, "--timeout", "1"
    )
    assert ghost.stdout.startswith("no targeted host is online (host ghost); the broker retained")
    assert await retained(broker.port, "damond/hosts/ghost/policy") is not None
    cleared = await asyncio.to_thread(damond, "policy", "clear", "--host", "ghost", "-c", cfg)
    assert (cleared.returncode, cleared.stdout) == (
        0,
        "cleared the retained policy of host ghost (damond/hosts/ghost/policy); hosts keep "
        "the policy they applied until a newer one comes\n",
    )
    assert await retained(broker.port, "damond/hosts/ghost/policy") is None


async def test_a_push_the_broker_drops_is_not_called_retained(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic read damond/#\n")  # anonymous clients read, and write nothing
    broker = Broker(tmp_path, f"allow_anonymous true\nacl_file {acl}")
    broker.start()
    try:
        cfg = operator(tmp_path / "op.toml", broker.port)
        doc = policy(tmp_path / "p.json", "p", 1)
        dropped = await asyncio.to_thread(
            damond, "policy", "push", doc, "--host", "ghost", "-c", cfg, "--timeout", "2"
        )
        assert (dropped.returncode, dropped.stdout) == (
            1,
            "the broker did not take the policy on damond/hosts/ghost/policy: its ACL may not "
            "let this user publish there; nothing was retained\n",
        )
        assert await retained(broker.port, "damond/hosts/ghost/policy") is None
    finally:
        broker.kill()


def test_policy_commands_take_only_their_own_flags(tmp_path: Path) -> None:
    doc = policy(tmp_path / "p.json", "p", 1)
    for flag, value in (("--backend", "sysfs"), ("--interval", "2"), ("--state-dir", "/x")):
        done = damond("policy", "push", doc, "--fleet", flag, value)
        assert done.returncode == 2
        assert f"unrecognized arguments: {flag} {value}" in done.stderr
    bad = damond("policy", "status", "--broker", "foo:bar")
    assert bad.returncode == 2
    assert "--broker" in bad.stderr and "mqtt.port" not in bad.stderr
