"""The pure parts of the policy channel: parsing, merge, signatures, pacing, persistence."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from damond.config import load_settings
from damond.policy.document import (
    Address,
    ContextPolicy,
    PolicyError,
    PolicyRejected,
    Scope,
    parse_policy,
)
from damond.policy.highwater import HIGH_WATER_FILE
from damond.policy.inbox import CoalescingInbox, TokenBucket
from damond.policy.merge import apply_layers as effective_contexts
from damond.policy.merge import fit_errors
from damond.policy.session import TakeoverWatch, backoff_delay
from damond.policy.signing import UNSIGNED, key_id, sign, signer_of
from damond.policy.store import STATE_FILE, PolicyStore
from tests.mqtt_policy.support import contexts


def rejected(payload: bytes, limit: int = 65536) -> list[PolicyError]:
    with pytest.raises(PolicyRejected) as info:
        parse_policy(payload, limit)
    return info.value.errors


def test_every_schema_error_is_reported_with_its_path() -> None:
    doc = {
        "id": 5,
        "generation": "7",
        "extra": 1,
        "contexts": {"node0": {"target_bp": 10001, "quota_max_bytes": 0, "enabled": 1, "x": []}},
    }
    errors = {e.loc: e.msg for e in rejected(json.dumps(doc).encode())}
    assert set(errors) == {
        "id",
        "generation",
        "extra",
        "contexts.node0.target_bp",
        "contexts.node0.quota_max_bytes",
        "contexts.node0.enabled",
        "contexts.node0.x",
    }
    assert errors["contexts.node0.target_bp"] == "must be between 0 and 10000, got 10001"
    assert errors["extra"] == "unknown field"
    assert errors["generation"] == "input should be a valid integer, got '7'"


def test_payload_errors_come_before_parsing() -> None:
    assert rejected(b"{" * 100, limit=64) == [
        PolicyError("payload", "is 100 bytes, more than the limit 64")
    ]
    assert rejected(b'{"id": "\xc3\x28"}')[0].msg == "is not valid UTF-8 (byte 8)"
    assert rejected(b"[" * 5000)[0].msg.startswith("is not valid JSON")
    assert rejected(b"[1]") == [PolicyError("(root)", "must be a JSON object, got array")]
    assert rejected(b"")[0].loc == "payload"


def test_most_specific_scope_wins_per_field() -> None:
    fleet = {"node0": ContextPolicy(target_bp=1000, quota_max_bytes=111, enabled=False)}
    group = {"node0": ContextPolicy(target_bp=2000, quota_max_bytes=222)}
    host = {"node0": ContextPolicy(target_bp=3000), "node1": ContextPolicy(enabled=False)}
    node0, node1 = effective_contexts(contexts(), [fleet, group, host])
    assert (node0.goal.target_bp, node0.scheme.quota.max_bytes, node0.enabled) == (3000, 222, False)
    assert (node1.goal.target_bp, node1.enabled) == (4000, False)
    assert effective_contexts(contexts(), []) == list(contexts())


def test_fit_errors_name_unknown_contexts_and_capacity() -> None:
    doc = {
        "id": "a",
        "generation": 1,
        "contexts": {"nodeX": {}, "node1": {"quota_max_bytes": 2048}},
    }
    errors = fit_errors(doc, contexts(), lambda node: 1024)
    assert errors == [
        PolicyError("contexts.nodeX", "unknown context, this host has: node0, node1"),
        PolicyError(
            "contexts.node1.quota_max_bytes",
            "must not exceed the capacity of node 1 (1024 bytes), got 2048",
        ),
    ]
    assert fit_errors(doc, contexts(), lambda node: None)[1:] == []


def test_signatures_cover_the_canonical_document() -> None:
    key = Ed25519PrivateKey.generate()
    other = Ed25519PrivateKey.generate()
    raw = {"id": "a", "generation": 1, "contexts": {"node0": {"target_bp": 5}}}
    signed = sign(raw, key)
    assert signer_of(signed, [other.public_key(), key.public_key()]) == (
        key_id(key.public_key()),
        [],
    )
    tampered = {**signed, "generation": 2}
    assert signer_of(tampered, [key.public_key()])[1][0].loc == "signature"
    assert signer_of(raw, [key.public_key()])[1][0].msg.startswith("required")
    assert signer_of(raw, []) == (UNSIGNED, [])


async def test_inbox_keeps_the_newest_per_scope_and_paces() -> None:
    now = [0.0]
    inbox: CoalescingInbox[Scope, str] = CoalescingInbox(
        TokenBucket(2.0, clock=lambda: now[0]), rank=ord
    )
    assert inbox.offer(Scope.HOST, "a") is None
    assert inbox.offer(Scope.FLEET, "b") is None
    assert inbox.offer(Scope.HOST, "c") == "a"
    assert inbox.offer(Scope.HOST, "b") == "b", "an older one never supersedes a newer one"
    assert await inbox.take() == (Scope.HOST, "c")
    assert await inbox.take() == (Scope.FLEET, "b")
    inbox.offer(Scope.GROUP, "d")
    bucket = TokenBucket(2.0, clock=lambda: now[0])
    bucket.take()
    bucket.take()
    assert bucket.delay() == pytest.approx(0.5)
    now[0] += 0.5
    assert bucket.delay() == 0.0
    assert len(inbox) == 1


def test_reconnect_retries_start_near_a_second_and_grow_to_a_jittered_cap() -> None:
    """With the default settings, a broker that is back within 15 s is found within 5 s
    of its return; a long outage is retried at most every 30 s."""
    rng = random.Random(1)
    cfg = load_settings(None, {"mqtt": {"host": "broker"}}).mqtt
    delays = [
        backoff_delay(n, cfg.reconnect_initial_s, cfg.reconnect_max_s, rng) for n in range(1, 40)
    ]
    assert all(0.75 <= d <= 1.0 for d in delays[:10])
    elapsed = 0.0
    for delay in delays:
        if elapsed >= 15.0:
            break
        assert delay <= 5.0, f"a broker back at {elapsed:.1f} s waits {delay:.1f} s"
        elapsed += delay
    assert all(22.5 <= d <= 30.0 for d in delays[-10:])
    assert len({round(d, 6) for d in delays[-10:]}) > 1


def test_store_persists_atomically_and_moves_a_corrupt_file_aside(tmp_path: Path) -> None:
    store = PolicyStore.load(tmp_path, Address("h1", "g1"))
    parsed = parse_policy(b'{"id":"a","generation":3,"contexts":{"node0":{"target_bp":7}}}', 999)
    store.save(store.with_policy(Scope.GROUP, parsed), (Scope.GROUP, UNSIGNED, 3))
    assert sorted(p.name for p in tmp_path.iterdir()) == [HIGH_WATER_FILE, STATE_FILE]
    again = PolicyStore.load(tmp_path, Address("h1", "g1"))
    assert again.generations() == {"fleet": None, "group": 3, "host": None}
    assert again.effective_contexts(contexts())[0].goal.target_bp == 7
    assert PolicyStore.load(tmp_path, Address("h1", "other")).generations()["group"] is None
    (tmp_path / STATE_FILE).write_text('{"format": 1, "scopes": {"host": {"document": {}}}}')
    fresh = PolicyStore.load(tmp_path, Address("h1", "g1"))
    assert fresh.generations() == {"fleet": None, "group": None, "host": None}
    assert fresh.high_water.get("group/g1", UNSIGNED) == 3, "the high water outlives the file"
    names = sorted(p.name for p in tmp_path.iterdir() if p.name != HIGH_WATER_FILE)
    assert len(names) == 1 and names[0].startswith(f"{STATE_FILE}.corrupt-")


def test_a_takeover_is_told_from_a_flapping_broker() -> None:
    taken = TakeoverWatch()
    # sessions closed within seconds, each retaken at the first attempt: another client
    assert [taken.session_ended(2.0, False), taken.session_ended(1.5, False)] == [False, True]
    flapping = TakeoverWatch()
    # the broker went away between short sessions (a refused attempt): an outage
    outcomes = [flapping.session_ended(lasted, False) for lasted in (2.0, None, 1.0, None, 3.0)]
    assert outcomes == [False] * 5
    assert TakeoverWatch().session_ended(600.0, True), "a v5 'session taken over' says so"
    assert not TakeoverWatch().session_ended(600.0, False)
