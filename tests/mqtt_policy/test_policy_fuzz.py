"""Thousands of malformed policy payloads against the real daemon: each one is
answered ``rejected`` (oversized ones without being parsed) and the contexts
keep iterating."""

from __future__ import annotations

import json
import queue
import socket
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from tests.mqtt_policy.support import Broker, Daemon, daemon_toml

ACK = "damond/hosts/h1/ack"
STATE = "damond/hosts/h1/state"
HOST_POLICY = "damond/hosts/h1/policy"
LIMIT = 65536

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
not_a_string = json_values.filter(lambda v: not isinstance(v, str))
not_an_int = json_values.filter(lambda v: isinstance(v, bool) or not isinstance(v, int))


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


random_bytes = st.binary(min_size=1, max_size=4096)  # an empty one clears; see the channel tests
wrong_types = st.builds(
    lambda pid, gen, ctxs: encode({"id": pid, "generation": gen, "contexts": ctxs}),
    not_a_string,
    st.integers(0, 100) | not_an_int,
    json_values,
) | st.builds(
    lambda gen, field, value: encode(
        {"id": "x", "generation": gen, "contexts": {"node0": {field: value}}}
    ),
    st.integers(0, 100),
    st.sampled_from(["target_bp", "quota_max_bytes", "enabled"]),
    json_values.filter(lambda v: v is not None and not isinstance(v, bool | int)),
)
deep_nesting = st.builds(
    lambda depth, opener, closer: opener * depth + closer * depth,
    st.integers(100, 30000),
    st.just(b"["),
    st.just(b"]"),
) | st.builds(
    lambda depth: (
        b'{"id":"d","generation":1,"contexts":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    ),
    st.integers(2, 5000),
)
huge_numbers = st.builds(
    lambda digits, field: (
        b'{"id":"h","generation":'
        + (b"9" * digits if field == "generation" else b"1")
        + b',"contexts":{"node0":{"'
        + field.encode()
        + b'":'
        + b"9" * digits
        + b"}}}"
    ),
    st.integers(20, 20000),
    st.sampled_from(["generation", "target_bp", "quota_max_bytes"]),
)
invalid_utf8 = st.builds(
    lambda prefix, bad: b'{"id":"' + prefix.encode() + bad + b'","generation":1}',
    st.text(max_size=10).filter(lambda t: '"' not in t and "\\" not in t),
    st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"]),
)
unknown_fields = st.builds(
    lambda key: encode({"id": "u", "generation": 1, key: 1}),
    st.text(min_size=1, max_size=10).filter(
        lambda k: k not in ("id", "generation", "contexts", "signature")
    ),
)
oversized = st.builds(lambda n: b"x" * n, st.integers(LIMIT + 1, LIMIT + 5000))
malformed = (
    random_bytes
    | wrong_types
    | deep_nesting
    | huge_numbers
    | invalid_utf8
    | unknown_fields
    | oversized
)


class SyncClient:
    def __init__(self, port: int) -> None:
        self.acks: queue.Queue[bytes] = queue.Queue()
        self.states: queue.Queue[bytes] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        sock = self.client.socket()
        assert isinstance(sock, socket.socket)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.loop_start()
        self.client.subscribe([(ACK, 1), (STATE, 1)])[1]

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        (self.acks if message.topic == ACK else self.states).put(bytes(message.payload))

    def ask(self, payload: bytes) -> dict[str, Any]:
        self.client.publish(HOST_POLICY, payload, qos=1).wait_for_publish(10)
        ack: dict[str, Any] = json.loads(self.acks.get(timeout=10))
        return ack

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, SyncClient]]:
    workdir = tmp_path_factory.mktemp("fuzz")
    broker = Broker(workdir)
    broker.start()
    daemon = Daemon(
        workdir,
        daemon_toml(workdir / "state", broker.port, {"rate_limit_per_s": 100000.0}),
    )
    daemon.start()
    daemon.wait_event("mqtt connected")
    client = SyncClient(broker.port)
    client.states.get(timeout=10)
    try:
        yield daemon, client
    finally:
        client.close()
        assert daemon.stop() == 0
        broker.kill()


@settings(
    max_examples=2500,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(payload=malformed)
def test_every_malformed_payload_is_rejected(
    fuzzed: tuple[Daemon, SyncClient], payload: bytes
) -> None:
    _, client = fuzzed
    ack = client.ask(payload)
    assert ack["status"] == "rejected", (payload[:200], ack)
    assert ack["errors"] and all(set(e) == {"loc", "msg"} for e in ack["errors"])
    if len(payload) > LIMIT:
        assert ack["errors"] == [
            {"loc": "payload", "msg": f"is {len(payload)} bytes, more than the limit {LIMIT}"}
        ]
    assert ack["effective"]["node0"]["target_bp"] == 6000


def test_contexts_kept_iterating_through_the_flood(fuzzed: tuple[Daemon, SyncClient]) -> None:
    daemon, client = fuzzed
    while not client.states.empty():
        client.states.get_nowait()
    first = json.loads(client.states.get(timeout=5))
    second = json.loads(client.states.get(timeout=5))
    assert daemon.alive()
    for name in ("node0", "node1"):
        assert second["contexts"][name]["up"] is True
        assert second["contexts"][name]["iterations"] > first["contexts"][name]["iterations"]
    assert not [e for e in daemon.events() if e.get("level") == "error"]
