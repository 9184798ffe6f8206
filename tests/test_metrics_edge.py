"""The endpoint of a real ``damond run`` against hostile or careless clients (curl and raw
sockets): oversized requests are answered, idle and slow connections do not lock out
``/healthz``, and neither pipelined scrapes nor wrong passwords stop the control loops."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.exporter_helpers import bcrypt_hash, http_get, write_web_config
from tests.tools import free_port, require_binary

AUTH = ("prometheus", "s3cret")


@dataclass
class Damond:
    url: str
    port: int
    log: Path
    web_config: Path

    def iterations(self) -> int:
        """Iterations completed by all contexts, from ``/status``."""
        reply = http_get(self.url + "/status", auth=AUTH, timeout=10.0)
        assert reply.status == 200, reply
        return sum(c["iterations"] for c in json.loads(reply.body)["contexts"])

    def curl(self, *args: str) -> str:
        """curl's ``%{http_code}`` for a request with ``args`` (000: no HTTP answer)."""
        curl = require_binary("curl", "curl")
        result = subprocess.run(
            [curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "-u", ":".join(AUTH),
             "--max-time", "10", *args],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        return result.stdout


@pytest.fixture(scope="module")
def damond(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Damond]:
    """``damond run`` on its default simulated machine, with basic auth."""
    tmp = tmp_path_factory.mktemp("edge")
    web = write_web_config(tmp / "web.yml", {"basic_auth_users": {AUTH[0]: bcrypt_hash(AUTH[1])}})
    (tmp / "damond.toml").write_text(f'[metrics]\nweb_config_file = "{web}"\n')
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAMOND_")}
    env |= {
        "DAMOND_CONFIG": str(tmp / "damond.toml"),
        "DAMOND_STATE_DIR": str(tmp / "state"),
        "DAMOND_METRICS__LISTEN": f"127.0.0.1:{port}",
        "DAMOND_MQTT__ENABLED": "false",
    }
    log_path = tmp / "damond.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "damond", "run"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    daemon = Damond(f"http://127.0.0.1:{port}", port, log_path, web)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if daemon.iterations() > 0:  # also caches the credentials
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        yield daemon
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
    log_text = log_path.read_text()
    assert code == 0, log_text
    assert "Traceback" not in log_text


CONTEXTS = 2
"""The default configuration's contexts, one iteration each per second."""


def kept_pace(advanced: int, seconds: float) -> bool:
    """Whether ``advanced`` iterations in ``seconds`` are most of what the loops owe
    (a loop can miss one tick at each end of the window, and one more on a busy machine)."""
    return advanced >= CONTEXTS * (seconds - 2)


def advances_while(
    damond: Damond, action: threading.Thread, seconds: float, stop: threading.Event
) -> int:
    """Iterations completed in ``seconds`` while ``action`` runs; then ``stop`` is set."""
    before = damond.iterations()
    action.start()
    try:
        time.sleep(seconds)
        return damond.iterations() - before
    finally:
        stop.set()
        action.join(timeout=30)


def test_a_1mb_request_line_gets_an_answer(damond: Damond, tmp_path: Path) -> None:
    query = tmp_path / "query"
    query.write_text("a" * 1_000_000)
    # -G appends the data to the URL: a request line of 1 MB
    assert damond.curl("-G", "--data-binary", f"@{query}", damond.url + "/metrics") in (
        "400",
        "414",
        "431",
    )
    assert damond.curl(damond.url + "/healthz") == "200"


def test_3000_headers_get_an_answer(damond: Damond, tmp_path: Path) -> None:
    headers = tmp_path / "headers"
    headers.write_text("".join(f"X-Header-{i}: value\n" for i in range(3000)))
    assert damond.curl("-H", f"@{headers}", damond.url + "/metrics") in ("400", "431")
    assert damond.curl(damond.url + "/healthz") == "200"


def test_idle_and_slow_connections_do_not_lock_out_healthz(damond: Damond) -> None:
    idle = [socket.create_connection(("127.0.0.1", damond.port)) for _ in range(200)]
    slow = [socket.create_connection(("127.0.0.1", damond.port)) for _ in range(200)]
    try:
        for sock in slow:
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")  # and never the rest
        probes = [damond.curl(damond.url + "/healthz") for _ in range(5)]
    finally:
        for sock in idle + slow:
            sock.close()
    assert probes == ["200"] * 5


def test_pipelined_head_requests_do_not_starve_the_control_loops(damond: Damond) -> None:
    stop = threading.Event()
    answered = bytearray()

    def flood() -> None:
        token = base64.b64encode(":".join(AUTH).encode())
        request = b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\n\r\n" % token
        with socket.create_connection(("127.0.0.1", damond.port)) as sock:
            sock.settimeout(0.05)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):  # the server reads as it answers
                    sock.sendall(request * 200)
                with contextlib.suppress(TimeoutError):
                    answered.extend(sock.recv(1 << 20)[:64])

    advanced = advances_while(damond, threading.Thread(target=flood), 8.0, stop)
    assert answered.startswith(b"HTTP/1.1 200 OK")
    assert kept_pace(advanced, 8.0), f"{advanced} iterations in 8 s while a client pipelined"


def test_wrong_passwords_do_not_stall_the_control_loops(damond: Damond) -> None:
    answers: list[int] = []

    def guess(i: int) -> None:
        answers.append(http_get(damond.url + "/metrics", auth=(AUTH[0], f"guess{i}")).status)

    def guesses() -> None:
        threads = [threading.Thread(target=guess, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
            time.sleep(0.1)
        for thread in threads:
            thread.join()

    advanced = advances_while(damond, threading.Thread(target=guesses), 5.0, threading.Event())
    assert kept_pace(advanced, 5.0), f"{advanced} iterations in 5 s while wrong passwords arrived"
    assert sorted(set(answers)) == [401, 429] and answers.count(429) >= 10, answers
    assert http_get(damond.url + "/metrics", auth=AUTH).status == 200  # remembered, not limited


def damond_status(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAMOND_")}
    return subprocess.run(
        [sys.executable, "-m", "damond", "status", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_damond_status_prints_a_table(damond: Damond, tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text(AUTH[1] + "\n")
    url = damond.url + "/status"
    shown = damond_status("--url", url, "--user", AUTH[0], "--password-file", str(password))
    assert shown.returncode == 0, shown.stderr
    header, *rows = shown.stdout.splitlines()
    assert header.split()[:4] == ["CONTEXT", "GOAL", "TARGET", "SET"]
    assert [row.split()[0] for row in rows] == ["node0", "node1"]
    assert "node_target_mem_bp@0  6000 bp  config" in rows[0]
    as_json = damond_status(
        "--url", url, "--user", AUTH[0], "--password-file", str(password), "--json"
    )
    assert [c["name"] for c in json.loads(as_json.stdout)["contexts"]] == ["node0", "node1"]
    # without --url: where the configuration says the endpoint listens
    config = tmp_path / "damond.toml"
    config.write_text(
        f'[metrics]\nlisten = "0.0.0.0:{damond.port}"\nweb_config_file = "{damond.web_config}"\n'
    )
    configured = damond_status(
        "-c", str(config), "--user", AUTH[0], "--password-file", str(password)
    )
    assert configured.returncode == 0, configured.stderr
    assert [row.split()[0] for row in configured.stdout.splitlines()] == [
        "CONTEXT",
        "node0",
        "node1",
    ]


def test_damond_status_says_why_it_cannot(damond: Damond, tmp_path: Path) -> None:
    anonymous = damond_status("--url", damond.url + "/status")
    assert anonymous.returncode == 1
    assert "HTTP 401" in anonymous.stderr and "--user" in anonymous.stderr
    unreachable = damond_status("--url", f"http://127.0.0.1:{free_port()}/status")
    assert unreachable.returncode == 1
    assert "cannot reach damond at" in unreachable.stderr
    assert "Traceback" not in anonymous.stderr + unreachable.stderr
    missing = damond_status("--url", damond.url, "--user", "u", "--password-file", "/nonexistent")
    assert missing.returncode == 2
    assert "--password-file: /nonexistent: No such file or directory" in missing.stderr


def test_a_simulated_run_exports_its_machines_counters_not_the_hosts(damond: Damond) -> None:
    host = dict(line.split() for line in Path("/proc/vmstat").read_text().splitlines())
    assert {"pgpromote_success", "pgdemote_kswapd"} & set(host)  # the host has its own

    def exported() -> dict[str, str]:
        body = http_get(damond.url + "/metrics", auth=AUTH).body.decode()
        return dict(re.findall(r"^damond_vmstat_(\w+)_total (\S+)$", body, re.MULTILINE))

    deadline = time.monotonic() + 30
    while float(exported()["numa_pages_migrated"]) == 0 and time.monotonic() < deadline:
        time.sleep(0.5)  # the simulated machine migrates once the controllers set quotas
    counters = exported()
    assert set(counters) == {"numa_pages_migrated"}  # what the simulated machine counts
    migrated = float(counters["numa_pages_migrated"])
    assert migrated > 0 and migrated != float(host.get("numa_pages_migrated", -1))
