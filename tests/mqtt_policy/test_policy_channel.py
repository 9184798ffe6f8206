"""The policy channel against a real mosquitto, wired to a real supervisor."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from damond.config import load_settings
from damond.policy.channel import PolicyChannel
from damond.policy.document import Address
from damond.policy.signing import sign
from damond.policy.store import STATE_FILE, PolicyStore
from tests.mqtt_policy.support import Broker, Host, Watcher

ACK = "damond/hosts/h1/ack"
STATE = "damond/hosts/h1/state"
HOST_POLICY = "damond/hosts/h1/policy"
GROUP_POLICY = "damond/groups/g1/policy"
FLEET_POLICY = "damond/fleet/policy"
GiB = 1 << 30
DEFAULT_QUOTA = 512 << 20


def effective(
    node0: tuple[int, int, bool] = (6000, DEFAULT_QUOTA, True),
    node1: tuple[int, int, bool] = (4000, DEFAULT_QUOTA, True),
) -> dict[str, Any]:
    def view(v: tuple[int, int, bool]) -> dict[str, Any]:
        return {"target_bp": v[0], "quota_max_bytes": v[1], "enabled": v[2]}

    return {"node0": view(node0), "node1": view(node1)}


async def test_applied_stale_duplicate_rejected_acks(broker: Broker, tmp_path: Path) -> None:
    async with Host(tmp_path, broker.port) as host, Watcher(broker.port, ACK) as w:
        doc = {"id": "p7", "generation": 7, "contexts": {"node0": {"target_bp": 5500}}}
        await w.publish(HOST_POLICY, doc)
        assert await w.next(ACK) == {
            "id": "p7",
            "generation": 7,
            "scope": "host",
            "status": "applied",
            "errors": [],
            "effective": effective(node0=(5500, DEFAULT_QUOTA, True)),
        }
        assert host.running("node0").goal.target_bp == 5500
        assert host.supervisor.loops["node0"].status.target_bp == 5500

        await w.publish(HOST_POLICY, {**doc, "contexts": {"node0": {"target_bp": 1}}})
        assert await w.next(ACK) == {
            "id": "p7",
            "generation": 7,
            "scope": "host",
            "status": "duplicate",
            "errors": [{"loc": "id", "msg": "already applied for scope host (generation 7)"}],
            "effective": effective(node0=(5500, DEFAULT_QUOTA, True)),
        }
        await w.publish(HOST_POLICY, {"id": "p6", "generation": 7, "contexts": {}})
        assert await w.next(ACK) == {
            "id": "p6",
            "generation": 7,
            "scope": "host",
            "status": "stale",
            "errors": [
                {
                    "loc": "generation",
                    "msg": "must be newer than 7, the last applied generation of scope host, got 7",
                }
            ],
            "effective": effective(node0=(5500, DEFAULT_QUOTA, True)),
        }
        bad = {
            "id": "p8",
            "generation": 8,
            "colour": "red",
            "contexts": {
                "node0": {"target_bp": 10001, "enabled": "yes"},
                "node9": {"target_bp": 1},
                "node1": {"quota_max_bytes": 41 * GiB},
            },
        }
        await w.publish(HOST_POLICY, bad)
        assert await w.next(ACK) == {
            "id": "p8",
            "generation": 8,
            "scope": "host",
            "status": "rejected",
            "errors": [
                {
                    "loc": "contexts.node0.target_bp",
                    "msg": "must be between 0 and 10000, got 10001",
                },
                {
                    "loc": "contexts.node0.enabled",
                    "msg": "input should be a valid boolean, got 'yes'",
                },
                {"loc": "colour", "msg": "unknown field"},
                {"loc": "contexts.node9", "msg": "unknown context, this host has: node0, node1"},
                {
                    "loc": "contexts.node1.quota_max_bytes",
                    "msg": f"must not exceed the capacity of node 1 ({40 * GiB} bytes), "
                    f"got {41 * GiB}",
                },
            ],
            "effective": effective(node0=(5500, DEFAULT_QUOTA, True)),
        }
        fits_not = {**bad, "contexts": {"node9": {}, "node1": {"quota_max_bytes": 41 * GiB}}}
        del fits_not["colour"]
        await w.publish(HOST_POLICY, fits_not)
        ack = await w.next(ACK)
        assert ack["status"] == "rejected"
        assert ack["errors"] == [
            {"loc": "contexts.node9", "msg": "unknown context, this host has: node0, node1"},
            {
                "loc": "contexts.node1.quota_max_bytes",
                "msg": f"must not exceed the capacity of node 1 ({40 * GiB} bytes), got {41 * GiB}",
            },
        ]
        assert host.running("node1").scheme.quota.max_bytes == DEFAULT_QUOTA
        persisted = json.loads((tmp_path / STATE_FILE).read_text())
        assert persisted["scopes"]["host"]["document"]["id"] == "p7"


async def test_host_over_group_over_fleet_per_field(broker: Broker, tmp_path: Path) -> None:
    async with Host(tmp_path, broker.port) as host, Watcher(broker.port, ACK, STATE) as w:
        fleet = {"node0": {"target_bp": 1000, "quota_max_bytes": GiB, "enabled": False}}
        await w.publish(FLEET_POLICY, {"id": "f1", "generation": 1, "contexts": fleet})
        assert (await w.next(ACK))["effective"] == effective(node0=(1000, GiB, False))
        group = {"node0": {"target_bp": 2000, "quota_max_bytes": 2 * GiB}}
        await w.publish(GROUP_POLICY, {"id": "g1", "generation": 1, "contexts": group})
        assert (await w.next(ACK))["effective"] == effective(node0=(2000, 2 * GiB, False))
        hostdoc = {"node0": {"target_bp": 3000}, "node1": {"enabled": False}}
        await w.publish(HOST_POLICY, {"id": "h1", "generation": 1, "contexts": hostdoc})
        ack = await w.next(ACK)
        assert ack["effective"] == effective(
            node0=(3000, 2 * GiB, False), node1=(4000, DEFAULT_QUOTA, False)
        )
        node0 = host.running("node0")
        assert (node0.goal.target_bp, node0.scheme.quota.max_bytes, node0.enabled) == (
            3000,
            2 * GiB,
            False,
        )
        # a newer fleet policy cannot override what the host scope sets
        await w.publish(
            FLEET_POLICY, {"id": "f2", "generation": 2, "contexts": {"node0": {"target_bp": 9}}}
        )
        assert (await w.next(ACK))["effective"]["node0"]["target_bp"] == 3000
        state = await w.next(STATE)
        while state["generations"] != {"fleet": 2, "group": 1, "host": 1}:
            state = await w.next(STATE)
        assert state["ids"] == {"fleet": "f2", "group": "g1", "host": "h1"}
        assert state["host"] == "h1" and state["group"] == "g1"
        assert set(state["contexts"]["node0"]) == {
            "metric_bp",
            "target_bp",
            "quota_bytes",
            "up",
            "iterations",
        }
        assert state["contexts"]["node0"]["target_bp"] == 3000


async def test_retained_policy_reaches_a_host_that_starts_later(
    broker: Broker, tmp_path: Path
) -> None:
    async with Watcher(broker.port, ACK) as w:
        await w.publish(
            HOST_POLICY,
            {"id": "early", "generation": 4, "contexts": {"node1": {"target_bp": 4500}}},
            retain=True,
        )
        async with Host(tmp_path, broker.port) as host:
            ack = await w.next(ACK)
            assert (ack["id"], ack["status"]) == ("early", "applied")
            assert host.running("node1").goal.target_bp == 4500
        # restarted with the policy persisted, the retained copy is a duplicate
        async with Host(tmp_path, broker.port) as host:
            assert host.running("node1").goal.target_bp == 4500
            ack = await w.next(ACK)
            assert (ack["id"], ack["status"]) == ("early", "duplicate")


async def test_bursts_beyond_the_rate_are_coalesced(broker: Broker, tmp_path: Path) -> None:
    async with (
        Host(tmp_path, broker.port, rate_limit_per_s=2.0) as host,
        Watcher(broker.port, ACK) as w,
    ):
        for gen in range(1, 13):
            doc = {"id": f"b{gen}", "generation": gen, "contexts": {"node0": {"target_bp": gen}}}
            await w.publish(HOST_POLICY, doc)
        acks = [await w.next(ACK) for _ in range(12)]
    by_id = {a["id"]: a for a in acks}
    assert len(by_id) == 12
    assert by_id["b12"]["status"] == "applied"
    superseded = [a for a in acks if a["status"] == "superseded"]
    assert superseded, "a burst of 12 at 2/s must coalesce"
    assert all("superseded by generation" in a["errors"][0]["msg"] for a in superseded)
    applied = [a for a in acks if a["status"] == "applied"]
    assert len(applied) + len(superseded) == 12
    assert host.running("node0").goal.target_bp == 12


async def test_oversized_payload_is_rejected_unparsed(broker: Broker, tmp_path: Path) -> None:
    async with (
        Host(tmp_path, broker.port, max_payload_bytes=1024) as host,
        Watcher(broker.port, ACK) as w,
    ):
        big = b'{"id": "big", "generation": 1, ' + b" " * 2000 + b"}"
        await w.publish(HOST_POLICY, big)
        ack = await w.next(ACK)
    assert ack["id"] is None and ack["status"] == "rejected"
    assert ack["errors"] == [
        {"loc": "payload", "msg": f"is {len(big)} bytes, more than the limit 1024"}
    ]
    assert host.running("node0").goal.target_bp == 6000


async def test_a_policy_that_cannot_be_persisted_changes_nothing(
    broker: Broker, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    async with Host(blocker / "state", broker.port) as host, Watcher(broker.port, ACK) as w:
        await w.publish(
            HOST_POLICY, {"id": "x", "generation": 1, "contexts": {"node0": {"target_bp": 1}}}
        )
        ack = await w.next(ACK)
        assert ack["status"] == "rejected"
        assert ack["errors"][0]["msg"].startswith(f"could not be persisted in {blocker}/state")
        assert host.running("node0").goal.target_bp == 6000
        assert host.channel.store.generations()["host"] is None


async def test_signed_policies_only_when_keys_are_configured(
    broker: Broker, tmp_path: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    pub = tmp_path / "policy.pub"
    pub.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    doc = {
        "id": "s1",
        "generation": 1,
        "scope": "host",
        "target": "h1",
        "contexts": {"node0": {"target_bp": 5000}},
    }
    async with (
        Host(tmp_path / "state", broker.port, policy_keys=[str(pub)]) as host,
        Watcher(broker.port, ACK) as w,
    ):
        await w.publish(HOST_POLICY, doc)
        ack = await w.next(ACK)
        assert (ack["status"], ack["errors"][0]["loc"]) == ("rejected", "signature")
        forged = sign(doc, Ed25519PrivateKey.generate())
        await w.publish(HOST_POLICY, forged)
        ack = await w.next(ACK)
        assert ack["errors"] == [
            {
                "loc": "signature",
                "msg": "does not verify with any of the 1 configured policy keys",
            }
        ]
        tampered = {**sign(doc, key), "generation": 2}
        await w.publish(HOST_POLICY, tampered)
        assert (await w.next(ACK))["status"] == "rejected"
        await w.publish(HOST_POLICY, {**doc, "signature": base64.b64encode(b"x").decode() + "!"})
        assert (await w.next(ACK))["errors"][0]["msg"] == "is not valid base64"
        assert host.running("node0").goal.target_bp == 6000
        await w.publish(HOST_POLICY, sign(doc, key))
        assert (await w.next(ACK))["status"] == "applied"
        assert host.running("node0").goal.target_bp == 5000


async def test_online_flag_and_offline_on_shutdown(broker: Broker, tmp_path: Path) -> None:
    online = "damond/hosts/h1/online"
    async with Watcher(broker.port, online) as w:
        async with Host(tmp_path, broker.port):
            assert await w.next(online) is True
        assert await w.next(online) is False


async def test_a_shutdown_arriving_with_a_puback_still_stops_the_channel(
    broker: Broker, tmp_path: Path
) -> None:
    """The cancellation lands in the loop iteration in which a state report's PUBACK
    is processed: the channel must still stop (and say offline), not run on."""
    online = "damond/hosts/h1/online"
    settings = load_settings(
        None,
        {
            "state_dir": tmp_path,
            "mqtt": {
                "host": "127.0.0.1",
                "port": broker.port,
                "host_id": "h1",
                "state_interval_s": 0.1,
            },
        },
    )
    channel = PolicyChannel(
        settings.mqtt,
        PolicyStore.load(tmp_path, Address("h1", None)),
        settings.contexts,
        lambda contexts: None,
        dict,
        lambda node: 1 << 40,
    )
    async with Watcher(broker.port, online) as w:
        run = asyncio.create_task(channel.run())
        assert await w.next(online) is True
        assert channel._client is not None
        paho = channel._client._client  # the PUBACK callback is paho's
        confirm = paho.on_publish
        assert confirm is not None

        def confirm_then_shut_down(*args: Any) -> None:
            confirm(*args)
            run.cancel()

        paho.on_publish = confirm_then_shut_down
        try:
            done, _ = await asyncio.wait([run], timeout=5)
            assert run in done, "the channel ran on after its cancellation"
        finally:
            run.cancel()
        assert run.cancelled()
        assert await w.next(online) is False
