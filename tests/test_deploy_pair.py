"""deploy/damond.toml and deploy/mosquitto/ are a working pair: a real mosquitto on the
example's configuration (TLS, client certificates, the ACL, with test paths and port)
starts without a warning, and a damond on the example file connects to it and applies
a policy an operator pushes with its own certificate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DAMOND
from tests.tools import free_port, require_binary

DEPLOY = Path(__file__).parent.parent / "deploy"
HOST = "host1.example.internal"  # the host of the example ACL
OPERATOR = "damond-operator"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def make_certificates(certs: Path) -> None:
    """A CA, the broker's certificate for localhost, and client certificates whose
    Common Names are the ACL's user names."""
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl(
        "req",
        "-x509",
        *key,
        "-keyout",
        f"{certs}/ca.key",
        "-out",
        f"{certs}/ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=damond-test-ca",
    )
    for name, cn, san in (
        ("broker", "localhost", "DNS:localhost,IP:127.0.0.1"),
        ("client", HOST, f"DNS:{HOST}"),
        ("operator", OPERATOR, f"DNS:{OPERATOR}"),
    ):
        _openssl(
            "req",
            *key,
            "-keyout",
            f"{certs}/{name}.key",
            "-out",
            f"{certs}/{name}.csr",
            "-subj",
            f"/CN={cn}",
        )
        (certs / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{certs}/{name}.csr",
            "-CA",
            f"{certs}/ca.crt",
            "-CAkey",
            f"{certs}/ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            f"{certs}/{name}.crt",
            "-extfile",
            f"{certs}/{name}.ext",
        )
    for path in certs.iterdir():
        path.chmod(0o644)  # the broker drops root for the mosquitto user, who reads them


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A temp dir the mosquitto user can read (pytest's own is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="damond-deploy-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def broker_config(workdir: Path, port: int) -> Path:
    """deploy/mosquitto/damond.conf with the test's files and port, logging everything."""
    text = (DEPLOY / "mosquitto" / "damond.conf").read_text()
    for old, new in (
        ("/etc/mosquitto/certs/", f"{workdir}/certs/"),
        ("/etc/mosquitto/damond.acl", str(DEPLOY / "mosquitto" / "damond.acl")),
        ("listener 8883\n", f"listener {port} 127.0.0.1\n"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    log = workdir / "mosquitto.log"
    log.touch()
    log.chmod(0o666)  # written by the mosquitto user
    path = workdir / "mosquitto.conf"
    path.write_text(text + f"log_dest file {log}\nlog_type all\n")
    path.chmod(0o644)
    return path


def damond_env(workdir: Path, port: int, **extra: str) -> dict[str, str]:
    """deploy/damond.toml's settings, moved onto the test's broker, files and a simulated
    machine (never the host's DAMON)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAMOND_")}
    env.update(
        DAMOND_BACKEND="simulated",
        DAMOND_STATE_DIR=str(workdir / "state"),
        DAMOND_METRICS__ENABLED="false",
        DAMOND_MQTT__HOST="localhost",
        DAMOND_MQTT__PORT=str(port),
        DAMOND_MQTT__HOST_ID=HOST,
        DAMOND_MQTT__RECONNECT_MAX_S="1",
        **extra,
    )
    return env


def damond_config(workdir: Path) -> Path:
    text = (DEPLOY / "damond.toml").read_text()
    assert "/etc/damond/tls/" in text
    path = workdir / "damond.toml"
    path.write_text(text.replace("/etc/damond/tls/", f"{workdir}/certs/"))
    return path


def wait_for_line(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert proc.poll() is None, f"exited ({proc.returncode}): {log.read_text()}"
        assert time.monotonic() < deadline, f"no {text!r} within {timeout} s: {log.read_text()}"
        time.sleep(0.1)


def test_the_example_broker_and_daemon_work_together(workdir: Path) -> None:
    mosquitto = require_binary("mosquitto", "mosquitto")
    require_binary("openssl", "openssl")
    (workdir / "certs").mkdir(mode=0o755)
    make_certificates(workdir / "certs")
    port = free_port()
    broker = subprocess.Popen(
        [mosquitto, "-c", str(broker_config(workdir, port))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    config = damond_config(workdir)
    with (workdir / "damond.log").open("w") as log:
        daemon = subprocess.Popen(
            [DAMOND, "run", "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=damond_env(workdir, port),
        )
    try:
        # (a bare TCP probe of the port would leave a TLS error in the broker's log)
        wait_for_line(workdir / "mosquitto.log", " running", broker)
        wait_for_line(workdir / "damond.log", '"event": "mqtt connected"', daemon)
        policy = workdir / "policy.json"
        policy.write_text(
            json.dumps(
                {
                    "id": "raise-dram-share",
                    "generation": 7,
                    "contexts": {"cxl-promote": {"target_bp": 8200}},
                }
            )
        )
        operator = damond_env(
            workdir,
            port,
            DAMOND_MQTT__CERT_FILE=f"{workdir}/certs/operator.crt",
            DAMOND_MQTT__KEY_FILE=f"{workdir}/certs/operator.key",
        )
        pushed = subprocess.run(
            [
                DAMOND,
                "policy",
                "push",
                str(policy),
                "--host",
                HOST,
                "-c",
                str(config),
                "--timeout",
                "20",
            ],
            capture_output=True,
            text=True,
            env=operator,
            timeout=60,
            check=False,
        )
        daemon_log = (workdir / "damond.log").read_text()
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr + daemon_log
        assert f"{HOST}: applied" in pushed.stdout
    finally:
        daemon.terminate()
        assert daemon.wait(timeout=30) == 0
        broker.terminate()
        broker.wait(timeout=10)
    records = [json.loads(line) for line in (workdir / "damond.log").read_text().splitlines()]
    [on] = [r for r in records if r["event"] == "policy channel on"]
    assert (on["broker"], on["tls"]) == (f"localhost:{port}", True)
    [connected] = [r for r in records if r["event"] == "mqtt connected"]
    assert connected["client_id"] == f"damond-{HOST}"
    reconfigured = [r for r in records if r["event"] == "context reconfigured"]
    assert [(r["context"], r["target_bp"]) for r in reconfigured] == [("cxl-promote", 8200)]
    broker_log = (workdir / "mosquitto.log").read_text()
    assert f"u'{HOST}'" in broker_log and f"u'{OPERATOR}'" in broker_log
    warnings = [line for line in broker_log.splitlines() if "Warning" in line or "Error" in line]
    assert warnings == [], broker_log
