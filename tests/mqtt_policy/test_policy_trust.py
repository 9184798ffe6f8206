"""What a host trusts, against a real mosquitto: signatures bound to scope and target,
generations that stay monotonic across restarts and lost files, persisted policies
checked again at load, and bad messages that can neither amplify nor displace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from structlog.testing import capture_logs

from damond.policy.signing import sign
from damond.policy.store import STATE_FILE
from tests.mqtt_policy.support import Broker, Host, Watcher

ACK = "damond/hosts/h1/ack"
HOST_POLICY = "damond/hosts/h1/policy"
GROUP_POLICY = "damond/groups/g1/policy"
FLEET_POLICY = "damond/fleet/policy"


def public_key_file(key: Ed25519PrivateKey, path: Path) -> str:
    path.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return str(path)


def doc(
    pid: str, generation: int, target_bp: int, scope: str | None = None, target: str | None = None
) -> dict[str, Any]:
    """A document setting node0's target; ``scope`` and ``target`` only where given."""
    out: dict[str, Any] = {
        "id": pid,
        "generation": generation,
        "contexts": {"node0": {"target_bp": target_bp}},
    }
    if scope is not None:
        out["scope"] = scope
    if target is not None:
        out["target"] = target
    return out


async def test_a_signed_document_applies_only_where_it_is_addressed(
    broker: Broker, tmp_path: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    keys = [public_key_file(key, tmp_path / "ops.pub")]
    async with (
        Host(tmp_path / "state", broker.port, policy_keys=keys) as host,
        Watcher(broker.port, ACK) as w,
    ):
        fleet = sign(doc("f1", 5, 5100, "fleet"), key)
        await w.publish(FLEET_POLICY, fleet)
        assert (await w.next(ACK))["status"] == "applied"
        # the operator's fleet document replayed on the host topic, to override later ones
        await w.publish(HOST_POLICY, fleet)
        ack = await w.next(ACK)
        assert (ack["status"], ack["errors"]) == (
            "rejected",
            [
                {"loc": "scope", "msg": "is 'fleet', but it came on the host topic"},
                {"loc": "target", "msg": "is not this host 'h1', got nothing"},
            ],
        )
        # a document signed for another host, replayed on this host's and its group's topics
        for_h2 = sign(doc("h2-off", 9, 100, "host", "h2"), key)
        await w.publish(HOST_POLICY, for_h2)
        ack = await w.next(ACK)
        assert ack["status"] == "rejected"
        assert ack["errors"] == [{"loc": "target", "msg": "is not this host 'h1', got 'h2'"}]
        await w.publish(GROUP_POLICY, for_h2)
        ack = await w.next(ACK)
        assert ack["status"] == "rejected"
        assert [e["loc"] for e in ack["errors"]] == ["scope", "target"]
        # a group this host is not in
        await w.publish(GROUP_POLICY, sign(doc("g2", 3, 200, "group", "g2"), key))
        ack = await w.next(ACK)
        assert ack["errors"] == [
            {"loc": "target", "msg": "is not this host's group 'g1', got 'g2'"}
        ]
        # a signed document that does not say where it applies binds nothing
        unbound = sign({"id": "u", "generation": 7, "contexts": {}}, key)
        await w.publish(HOST_POLICY, unbound)
        ack = await w.next(ACK)
        assert [e["loc"] for e in ack["errors"]] == ["scope", "target"]
        assert host.running("node0").goal.target_bp == 5100
        await w.publish(HOST_POLICY, sign(doc("mine", 1, 5300, "host", "h1"), key))
        assert (await w.next(ACK))["status"] == "applied"
        assert host.running("node0").goal.target_bp == 5300


async def test_generations_stay_monotonic_when_the_policy_file_is_lost_or_corrupt(
    broker: Broker, tmp_path: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    keys = [public_key_file(key, tmp_path / "ops.pub")]
    state = tmp_path / "state"
    old = sign(doc("old", 4, 5000, "host", "h1"), key)
    new = sign(doc("new", 5, 5500, "host", "h1"), key)
    async with Host(state, broker.port, policy_keys=keys), Watcher(broker.port, ACK) as w:
        await w.publish(HOST_POLICY, old)
        assert (await w.next(ACK))["status"] == "applied"
        await w.publish(HOST_POLICY, new)
        assert (await w.next(ACK))["status"] == "applied"
    for damage in ("corrupt", "lost"):
        if damage == "corrupt":
            (state / STATE_FILE).write_text("{not json")
        else:
            (state / STATE_FILE).unlink()
        async with (
            Host(state, broker.port, policy_keys=keys) as host,
            Watcher(broker.port, ACK) as w,
        ):
            assert host.running("node0").goal.target_bp == 6000
            for replay in (old, new):
                await w.publish(HOST_POLICY, replay)
                ack = await w.next(ACK)
                assert ack["status"] == "stale", (damage, ack)
                assert "the highest generation of scope host" in ack["errors"][0]["msg"]
            assert host.running("node0").goal.target_bp == 6000
            newer = sign(doc(f"after-{damage}", 6 if damage == "corrupt" else 7, 5600, "host",
                             "h1"), key)  # fmt: skip
            await w.publish(HOST_POLICY, newer)
            assert (await w.next(ACK))["status"] == "applied"
            assert host.running("node0").goal.target_bp == 5600


async def test_a_persisted_policy_is_verified_again_at_load(broker: Broker, tmp_path: Path) -> None:
    removed = Ed25519PrivateKey.generate()
    kept = Ed25519PrivateKey.generate()
    removed_pub = public_key_file(removed, tmp_path / "removed.pub")
    kept_pub = public_key_file(kept, tmp_path / "kept.pub")
    state = tmp_path / "state"
    async with (
        Host(state, broker.port, policy_keys=[removed_pub, kept_pub]),
        Watcher(broker.port, ACK) as w,
    ):
        await w.publish(HOST_POLICY, sign(doc("by-removed", 3, 5100, "host", "h1"), removed))
        assert (await w.next(ACK))["status"] == "applied"
        await w.publish(FLEET_POLICY, sign(doc("by-kept", 2, 5200, "fleet"), kept))
        assert (await w.next(ACK))["status"] == "applied"
    with capture_logs() as logs:
        async with Host(state, broker.port, policy_keys=[kept_pub]) as host:
            # the host policy's key is gone: the fleet's value is in force, not the host's
            assert host.running("node0").goal.target_bp == 5200
            assert host.channel.store.generations() == {"fleet": 2, "group": None, "host": None}
    refused = [e for e in logs if e["event"].startswith("persisted policy not applied")]
    assert [(e["scope"], e["id"]) for e in refused] == [("host", "by-removed")]
    assert refused[0]["errors"] == [
        "signature: does not verify with any of the 1 configured policy keys"
    ]


async def test_an_ack_stays_small_however_many_errors_a_document_has(
    broker: Broker, tmp_path: Path
) -> None:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    names = [digits[i // 1296] + digits[i // 36 % 36] + digits[i % 36] for i in range(7000)]
    many = {"id": "many", "generation": 1, "contexts": {n: {} for n in names}}
    payload = json.dumps(many, separators=(",", ":")).encode()
    assert 60_000 < len(payload) <= 65536
    async with Host(tmp_path / "open", broker.port), Watcher(broker.port) as w:
        assert w.client is not None
        await w.client.subscribe(ACK, qos=1)
        await w.publish(HOST_POLICY, payload)
        _, raw_ack = await w.messages.get()
    ack = json.loads(raw_ack)
    assert len(raw_ack) < 4096, len(raw_ack)
    assert ack["status"] == "rejected"
    assert len(ack["errors"]) == 21
    assert ack["errors"][0] == {
        "loc": "contexts.000",
        "msg": "unknown context, this host has: node0, node1",
    }
    assert ack["errors"][-1] == {"loc": "(root)", "msg": "6980 more errors not listed"}

    key = Ed25519PrivateKey.generate()
    keys = [public_key_file(key, tmp_path / "ops.pub")]
    bad_values = {**many, "contexts": {n: {"target_bp": 99999} for n in names[:2400]}}
    async with (
        Host(tmp_path / "signed", broker.port, policy_keys=keys),
        Watcher(broker.port, ACK) as w,
    ):
        await w.publish(HOST_POLICY, json.dumps(bad_values, separators=(",", ":")).encode())
        ack = await w.next(ACK)
    assert ack["errors"] == [
        {"loc": "signature", "msg": "required: this host accepts only signed policies"}
    ]


async def test_an_invalid_message_never_supersedes_a_valid_one(
    broker: Broker, tmp_path: Path
) -> None:
    async with (
        Host(tmp_path, broker.port, rate_limit_per_s=1.0) as host,
        Watcher(broker.port, ACK) as w,
    ):
        await w.publish(HOST_POLICY, doc("first", 1, 5000))
        assert (await w.next(ACK))["status"] == "applied"  # the rate's one token is spent
        await w.publish(HOST_POLICY, doc("too-high", 2, 12000))
        await w.publish(HOST_POLICY, b"not json")
        acks = [await w.next(ACK), await w.next(ACK)]
        assert [(a["id"], a["status"]) for a in acks] == [
            ("too-high", "rejected"),
            (None, "rejected"),
        ]
        assert acks[0]["errors"] == [
            {"loc": "contexts.node0.target_bp", "msg": "must be between 0 and 10000, got 12000"}
        ]
        assert acks[1]["errors"][0]["msg"].startswith("is not valid JSON")
        # a newer valid message waits; an older valid one arriving later is the one superseded
        await w.publish(HOST_POLICY, doc("third", 4, 5200))
        await w.publish(HOST_POLICY, doc("late", 3, 5100))
        ack = await w.next(ACK)
        assert (ack["id"], ack["status"]) == ("late", "superseded")
        assert ack["errors"][0]["msg"].startswith("superseded by generation 4, a newer valid")
        ack = await w.next(ACK)
        assert (ack["id"], ack["status"]) == ("third", "applied")
        assert host.running("node0").goal.target_bp == 5200


async def test_a_junk_flood_does_not_suppress_a_signed_push(broker: Broker, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    keys = [public_key_file(key, tmp_path / "ops.pub")]
    async with (
        Host(tmp_path / "state", broker.port, policy_keys=keys, rate_limit_per_s=2.0) as host,
        Watcher(broker.port, ACK) as w,
    ):
        await w.publish(HOST_POLICY, sign(doc("warm-up", 1, 5000, "host", "h1"), key))
        assert (await w.next(ACK))["status"] == "applied"
        await w.publish(HOST_POLICY, sign(doc("wanted", 2, 5400, "host", "h1"), key))
        junk = [
            json.dumps({"id": f"j{i}", "generation": 100 + i, "contexts": {}}).encode()
            for i in range(100)
        ]
        for payload in junk:
            await w.publish(HOST_POLICY, payload)
        acks = [await w.next(ACK) for _ in range(101)]
    by_id = {a["id"]: a["status"] for a in acks}
    assert by_id["wanted"] == "applied"
    assert {by_id[f"j{i}"] for i in range(100)} == {"rejected"}
    assert host.running("node0").goal.target_bp == 5400


async def test_a_cleared_retained_policy_is_ignored_and_duplicate_keys_are_refused(
    broker: Broker, tmp_path: Path
) -> None:
    async with Host(tmp_path, broker.port) as host, Watcher(broker.port, ACK) as w:
        with capture_logs() as logs:
            await w.publish(HOST_POLICY, b"", retain=True)
            twice = b'{"id":"d","generation":1,"contexts":{"node0":{"target_bp":5100}},'
            await w.publish(HOST_POLICY, twice + b'"generation":2}')
            ack = await w.next(ACK)
        assert (ack["id"], ack["status"]) == ("d", "rejected")
        assert ack["errors"] == [
            {"loc": "payload", "msg": "has the key 'generation' twice in one object"}
        ]
        assert host.running("node0").goal.target_bp == 6000
    cleared = [e for e in logs if e["event"] == "cleared retained policy ignored"]
    assert [e["log_level"] for e in cleared] == ["debug"]
    assert not [e for e in logs if e["event"] == "policy rejected" and e["id"] is None]
