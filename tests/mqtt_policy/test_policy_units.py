"""The pure parts of the policy channel: parsing, merge, signatures, pacing, persistence."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from damond.policy.channel import backoff_delay
from damond.policy.document import (
    ContextPolicy,
    PolicyError,
    PolicyRejected,
    Scope,
    parse_policy,
)
from damond.policy.inbox import CoalescingInbox, TokenBucket
from damond.policy.merge import apply_layers as effective_contexts
from damond.policy.merge import fit_errors
from damond.policy.signing import sign, signature_errors
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
    assert (
        signature_errors(signed, signed["signature"], [other.public_key(), key.public_key()]) == []
    )
    tampered = {**signed, "generation": 2}
    assert signature_errors(tampered, signed["signature"], [key.public_key()])[0].loc == "signature"
    assert signature_errors(raw, None, [key.public_key()])[0].msg.startswith("required")
    assert signature_errors(raw, None, []) == []


async def test_inbox_keeps_the_newest_per_scope_and_paces() -> None:
    now = [0.0]
    inbox: CoalescingInbox[Scope, str] = CoalescingInbox(TokenBucket(2.0, clock=lambda: now[0]))
    assert inbox.offer(Scope.HOST, "a") is None
    assert inbox.offer(Scope.FLEET, "b") is None
    assert inbox.offer(Scope.HOST, "c") == "a"
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


def test_backoff_grows_to_the_cap_with_jitter() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, 8.0, rng) for n in range(1, 12)]
    assert 0.25 <= delays[0] <= 0.5
    assert all(4.0 <= d <= 8.0 for d in delays[5:])
    assert len({round(d, 6) for d in delays[5:]}) > 1


def test_store_persists_atomically_and_moves_a_corrupt_file_aside(tmp_path: Path) -> None:
    store = PolicyStore.load(tmp_path, "g1")
    parsed = parse_policy(b'{"id":"a","generation":3,"contexts":{"node0":{"target_bp":7}}}', 999)
    store.save(store.with_policy(Scope.GROUP, parsed))
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILE]
    again = PolicyStore.load(tmp_path, "g1")
    assert again.generations() == {"fleet": None, "group": 3, "host": None}
    assert again.effective_contexts(contexts())[0].goal.target_bp == 7
    assert PolicyStore.load(tmp_path, "other").generations()["group"] is None
    (tmp_path / STATE_FILE).write_text('{"format": 1, "scopes": {"host": {"document": {}}}}')
    fresh = PolicyStore.load(tmp_path, "g1")
    assert fresh.generations() == {"fleet": None, "group": None, "host": None}
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 1 and names[0].startswith(f"{STATE_FILE}.corrupt-")
