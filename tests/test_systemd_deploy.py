"""The files in ``deploy/``: the example config is valid, and the example
mosquitto listener (TLS, client certificates, ACL) works and enforces the ACL
on a real broker."""

from __future__ import annotations

import asyncio
import getpass
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from damond.config import Mode, load_settings
from tests.tools import free_port, require_binary

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_example_config_is_valid_for_a_two_tier_host() -> None:
    settings = load_settings(DEPLOY / "damond.toml")
    assert settings.backend == "sysfs"
    assert {(c.name, c.node, c.scheme.target_nid) for c in settings.contexts} == {
        ("cxl-promote", 1, 0),
        ("dram-demote", 0, 1),
    }
    promote, demote = settings.contexts
    # the two goals leave a band where both hold still: no ping-pong
    assert promote.goal.nid == demote.goal.nid == 0
    assert promote.goal.target_bp < demote.goal.target_bp
    assert all(c.mode is Mode.DAEMON for c in settings.contexts)


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(
        [require_binary("openssl", "openssl"), *args], cwd=cwd, check=True, capture_output=True
    )


def issue_certificate(name: str, cwd: Path, server: bool = False) -> None:
    """``name.key`` and ``name.crt`` with CN ``name``, signed by ``ca``."""
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=cwd)
    openssl(
        "req", "-new", "-key", f"{name}.key", "-subj", f"/CN={name}", "-out", f"{name}.csr", cwd=cwd
    )
    ext = cwd / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n" if server else "")
    openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "1", "-extfile", ext.name, "-out", f"{name}.crt",
        cwd=cwd,
    )  # fmt: skip


@dataclass(frozen=True)
class Broker:
    port: int
    certs: Path

    def client(self, name: str) -> aiomqtt.Client:
        return aiomqtt.Client(
            "127.0.0.1",
            self.port,
            identifier=f"test-{name}",
            tls_params=aiomqtt.TLSParameters(
                ca_certs=str(self.certs / "ca.crt"),
                certfile=str(self.certs / f"{name}.crt"),
                keyfile=str(self.certs / f"{name}.key"),
            ),
        )


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """mosquitto running the example listener, with its paths moved into tmp_path."""
    mosquitto = require_binary("mosquitto", "mosquitto")
    certs = tmp_path / "certs"
    certs.mkdir()
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=certs)
    openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=test-ca", "-days", "1",
        "-out", "ca.crt", cwd=certs,
    )  # fmt: skip
    issue_certificate("broker", certs, server=True)
    for client in ("damond-operator", "h1", "h2"):
        issue_certificate(client, certs)
    port = free_port()
    acl = (DEPLOY / "mosquitto" / "damond.acl").read_text()
    # the example's block for one host, as an operator adds one per host (h2 has none)
    example = "user host1.example.internal\n"
    assert example in acl
    (tmp_path / "damond.acl").write_text(acl.replace(example, "user h1\n"))
    conf = (DEPLOY / "mosquitto" / "damond.conf").read_text()
    assert "listener 8883\n" in conf
    conf = conf.replace("listener 8883\n", f"listener {port} 127.0.0.1\n")
    conf = conf.replace("/etc/mosquitto/", f"{tmp_path}/")
    # started as root, mosquitto would switch to its own user, which cannot read tmp_path
    conf += f"log_dest stdout\nuser {getpass.getuser()}\n"
    (tmp_path / "mosquitto.conf").write_text(conf)
    proc = subprocess.Popen(
        [mosquitto, "-c", str(tmp_path / "mosquitto.conf")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for _ in range(100):
            if proc.poll() is not None:
                raise AssertionError(f"mosquitto exited: {proc.communicate()[0]}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield Broker(port, certs)
    finally:
        proc.terminate()
        proc.wait(timeout=5)


async def received(client: aiomqtt.Client, within_s: float) -> dict[str, bytes]:
    """Every message arriving within ``within_s``, by topic."""
    out: dict[str, bytes] = {}
    try:
        async with asyncio.timeout(within_s):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                out[str(message.topic)] = message.payload
    except TimeoutError:
        pass
    return out


async def test_acl_lets_each_host_see_and_write_only_its_own_topics(broker: Broker) -> None:
    async with (
        broker.client("damond-operator") as operator,
        broker.client("h1") as h1,
    ):
        await operator.subscribe("damond/hosts/+/state", qos=1)
        await h1.subscribe("damond/hosts/+/policy", qos=1)
        await h1.subscribe("damond/fleet/policy", qos=1)
        for host in ("h1", "h2"):
            await operator.publish(f"damond/hosts/{host}/policy", b"p-" + host.encode(), qos=1)
        await operator.publish("damond/fleet/policy", b"fleet", qos=1)
        for host in ("h1", "h2"):  # h1 writing as h2 is dropped by the broker
            await h1.publish(f"damond/hosts/{host}/state", b"s-from-h1", qos=1)
        await h1.publish("damond/fleet/policy", b"forged", qos=1)  # dropped too
        h1_got, operator_got = await asyncio.gather(received(h1, 1.0), received(operator, 1.0))
    assert h1_got == {"damond/hosts/h1/policy": b"p-h1", "damond/fleet/policy": b"fleet"}
    assert operator_got == {"damond/hosts/h1/state": b"s-from-h1"}


async def test_a_client_without_a_certificate_is_refused(broker: Broker) -> None:
    client = aiomqtt.Client(
        "127.0.0.1",
        broker.port,
        tls_params=aiomqtt.TLSParameters(ca_certs=str(broker.certs / "ca.crt")),
        timeout=2,  # under TLS 1.3 the refusal can show only as a missing CONNACK
    )
    with pytest.raises(aiomqtt.MqttError):
        async with client:
            pass
