"""``damond policy`` as the operator runs it, against real daemons and brokers,
including TLS with a test CA and an ACL that separates who may push and who may read."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from tests.mqtt_policy.support import Broker, Daemon, daemon_toml
from tests.tools import require_binary


def damond(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "damond", *args], capture_output=True, text=True, timeout=60
    )


def operator_toml(path: Path, port: int, **mqtt: str) -> Path:
    lines = ["[mqtt]", 'host = "127.0.0.1"', f"port = {port}"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in mqtt.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_policy(path: Path, doc: dict[str, object]) -> Path:
    path.write_text(json.dumps(doc))
    return path


async def started(daemon: Daemon) -> None:
    daemon.start()
    await asyncio.to_thread(daemon.wait_event, "mqtt connected")
    await asyncio.sleep(0.3)  # the first state report is retained by then


async def test_push_get_status_and_exit_codes(broker: Broker, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    private = tmp_path / "policy.key"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = tmp_path / "policy.pub"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    daemon = Daemon(
        tmp_path, daemon_toml(tmp_path / "state", broker.port, {"policy_keys": [str(public)]})
    )
    cfg = operator_toml(tmp_path / "op.toml", broker.port)
    good = write_policy(
        tmp_path / "good.json",
        {"id": "g", "generation": 1, "contexts": {"node0": {"target_bp": 5200}}},
    )
    await started(daemon)
    try:
        unsigned = await asyncio.to_thread(
            damond, "policy", "push", str(good), "--group", "g1", "-c", str(cfg), "--timeout", "5"
        )
        assert unsigned.returncode == 1
        assert unsigned.stdout.strip() == (
            "h1: rejected (scope group, generation 1): "
            "signature: required: this host accepts only signed policies"
        )
        signed = await asyncio.to_thread(
            damond, "policy", "push", str(good), "--group", "g1", "--key", str(private),
            "-c", str(cfg), "--timeout", "5",
        )  # fmt: skip
        assert (signed.returncode, signed.stdout.strip()) == (
            0,
            "h1: applied (scope group, generation 1)",
        )
        fleet = await asyncio.to_thread(
            damond, "policy", "push", str(good), "--fleet", "--key", str(private),
            "-c", str(cfg), "--timeout", "5",
        )  # fmt: skip
        assert fleet.returncode == 0 and fleet.stdout.startswith("h1: applied (scope fleet")
        nobody = await asyncio.to_thread(
            damond, "policy", "push", str(good), "--host", "h2", "-c", str(cfg), "--timeout", "1"
        )
        assert nobody.returncode == 1
        assert nobody.stdout.startswith("no targeted host is online (host h2)")
        invalid = write_policy(tmp_path / "bad.json", {"id": "b", "generation": -1})
        bad = await asyncio.to_thread(
            damond, "policy", "push", str(invalid), "--host", "h1", "-c", str(cfg)
        )
        assert bad.returncode == 2
        assert "generation: input should be greater than or equal to 0, got -1" in bad.stderr
        await asyncio.sleep(0.3)
        got = await asyncio.to_thread(damond, "policy", "get", "--host", "h1", "-c", str(cfg))
        assert got.returncode == 0, got.stderr
        state = json.loads(got.stdout)
        assert state["online"] is True
        assert state["generations"] == {"fleet": 1, "group": 1, "host": None}
        assert state["effective"]["node0"]["target_bp"] == 5200
        status = await asyncio.to_thread(damond, "policy", "status", "-c", str(cfg))
        assert status.stdout.split() == ["h1", "online", "group=g1", "fleet=1", "group=1", "host=-"]
    finally:
        assert daemon.stop() == 0
    offline = await asyncio.to_thread(damond, "policy", "status", "-c", str(cfg))
    assert offline.stdout.split()[:2] == ["h1", "offline"]
    broker.kill()
    down = await asyncio.to_thread(damond, "policy", "status", "-c", str(cfg))
    assert down.returncode == 1
    assert f"cannot reach the MQTT broker at 127.0.0.1:{broker.port}" in down.stderr


def _certificate(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0] if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            False,
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def make_pki(directory: Path) -> dict[str, Path]:
    """A test CA, a server certificate for 127.0.0.1 and one client certificate."""
    files: dict[str, Path] = {}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("damond test CA", ca_key, None)
    for name, cert, key in [("ca", ca, ca_key)] + [
        (n, _certificate(n, k, (ca.subject, ca_key)), k)
        for n, k in (
            ("server", ec.generate_private_key(ec.SECP256R1())),
            ("client", ec.generate_private_key(ec.SECP256R1())),
        )
    ]:
        files[f"{name}_cert"] = directory / f"{name}.pem"
        files[f"{name}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{name}_key"] = directory / f"{name}.key"
        files[f"{name}_key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return files


ACL = """\
user operator
topic readwrite damond/#

user viewer
topic read damond/hosts/+/state
topic read damond/hosts/+/online

user h1
topic read damond/fleet/policy
topic read damond/groups/g1/policy
topic read damond/hosts/h1/policy
topic write damond/hosts/h1/ack
topic write damond/hosts/h1/state
topic write damond/hosts/h1/online
"""


async def test_tls_and_acl_separate_pushers_from_readers(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    passwd = tmp_path / "passwd"
    passwd.write_text("")
    secrets: dict[str, Path] = {}
    for user in ("operator", "viewer", "h1"):
        await asyncio.to_thread(
            subprocess.run,
            [
                require_binary("mosquitto_passwd", "mosquitto"),
                "-b",
                str(passwd),
                user,
                f"{user}-secret",
            ],
            check=True,
            capture_output=True,
        )
        secrets[user] = tmp_path / f"{user}.password"
        secrets[user].write_text(f"{user}-secret\n")
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    broker = Broker(
        tmp_path,
        f"cafile {pki['ca_cert']}\ncertfile {pki['server_cert']}\nkeyfile {pki['server_key']}\n"
        f"require_certificate true\nallow_anonymous false\npassword_file {passwd}\n"
        f"acl_file {acl}",
    )
    broker.start()
    tls = {
        "ca_file": str(pki["ca_cert"]),
        "cert_file": str(pki["client_cert"]),
        "key_file": str(pki["client_key"]),
    }
    daemon = Daemon(
        tmp_path,
        daemon_toml(
            tmp_path / "state",
            broker.port,
            {"username": "h1", "password_file": str(secrets["h1"]), **tls},
        ),
    )
    try:
        await started(daemon)
        op = operator_toml(
            tmp_path / "op.toml", broker.port, username="operator",
            password_file=str(secrets["operator"]), **tls,
        )  # fmt: skip
        viewer = operator_toml(
            tmp_path / "viewer.toml", broker.port, username="viewer",
            password_file=str(secrets["viewer"]), **tls,
        )  # fmt: skip
        policy = write_policy(
            tmp_path / "p.json",
            {"id": "t1", "generation": 1, "contexts": {"node1": {"target_bp": 4100}}},
        )
        pushed = await asyncio.to_thread(
            damond, "policy", "push", str(policy), "--host", "h1", "-c", str(op), "--timeout", "5"
        )
        assert (pushed.returncode, pushed.stdout.strip()) == (
            0,
            "h1: applied (scope host, generation 1)",
        ), pushed.stderr
        second = write_policy(
            tmp_path / "p2.json",
            {"id": "t2", "generation": 2, "contexts": {"node1": {"target_bp": 1}}},
        )
        denied = await asyncio.to_thread(
            damond,
            "policy",
            "push",
            str(second),
            "--host",
            "h1",
            "-c",
            str(viewer),
            "--timeout",
            "2",
        )
        assert denied.returncode == 1
        got = await asyncio.to_thread(damond, "policy", "get", "--host", "h1", "-c", str(viewer))
        assert got.returncode == 0, got.stderr
        state = json.loads(got.stdout)
        assert state["ids"]["host"] == "t1"
        assert state["effective"]["node1"]["target_bp"] == 4100
        no_cert = operator_toml(
            tmp_path / "nocert.toml", broker.port, username="operator",
            password_file=str(secrets["operator"]), ca_file=str(pki["ca_cert"]),
        )  # fmt: skip
        refused = await asyncio.to_thread(damond, "policy", "status", "-c", str(no_cert))
        assert refused.returncode == 1 and "cannot reach the MQTT broker" in refused.stderr
    finally:
        assert daemon.stop() == 0
        broker.kill()
