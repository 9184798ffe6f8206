"""The metrics endpoint over real loopback sockets: routes, health, TLS, basic auth."""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import subprocess
import time
import urllib.error
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from damond.backend.simulated.backend import SimBackend
from damond.config import MetricsConfig, SimulationConfig
from damond.config.passwordhash import hash_password
from damond.control.status import ContextStatus
from damond.metrics.endpoint import MAX_CONNECTIONS, MetricsEndpoint
from damond.metrics.exporter import DaemonMetrics
from tests.exporter_helpers import Reply, http_get
from tests.tools import free_port, require_binary

INTERVAL_S = 1.0


def status(name: str, age_s: float | None) -> ContextStatus:
    """A context whose last iteration finished ``age_s`` ago (None: never)."""
    st = ContextStatus(name, "node_target_mem_bp", 0, 6000)
    if age_s is not None:
        st.last_iteration_monotonic = time.monotonic() - age_s
        st.iterations = 1
        st.up = True
    return st


@asynccontextmanager
async def serving(
    statuses: dict[str, ContextStatus], **cfg: Any
) -> AsyncIterator[tuple[str, asyncio.Task[None]]]:
    port = free_port()
    config = MetricsConfig(listen=f"127.0.0.1:{port}", **cfg)
    metrics = DaemonMetrics(SimBackend(SimulationConfig(), (), lambda: 0.0), mqtt_enabled=False)
    endpoint = MetricsEndpoint(config, metrics, lambda: statuses, INTERVAL_S)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(endpoint.serve())
        await until_listening(port)
        scheme = "https" if config.tls else "http"
        yield f"{scheme}://127.0.0.1:{port}", task
        task.cancel()


async def until_listening(port: int, timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise AssertionError(f"nothing listens on port {port}")


async def get(url: str, **kwargs: Any) -> Reply:
    return await asyncio.to_thread(http_get, url, **kwargs)


async def test_metrics_and_healthy_healthz() -> None:
    statuses = {"a": status("a", 0.1), "b": status("b", 0.5)}
    async with serving(statuses) as (url, _):
        metrics = await get(url + "/metrics")
        health = await get(url + "/healthz")
    assert metrics.status == 200
    assert metrics.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name for f in text_string_to_metric_families(metrics.body.decode())}
    assert {"damond_context_up", "damond_goal_target_ratio"} <= families
    assert health.status == 200
    assert json.loads(health.body) == {"status": "ok", "contexts": 2, "stale": []}


async def test_healthz_names_the_stale_contexts_until_they_iterate() -> None:
    statuses = {
        "fresh": status("fresh", 0.5),
        "stale": status("stale", 3.5 * INTERVAL_S),
        "never": status("never", None),
    }
    async with serving(statuses) as (url, _):
        stale = await get(url + "/healthz")
        for name in ("stale", "never"):
            statuses[name].last_iteration_monotonic = time.monotonic()
        healthy = await get(url + "/healthz")
    assert stale.status == 503
    assert json.loads(stale.body) == {"status": "stale", "contexts": 3, "stale": ["stale", "never"]}
    assert healthy.status == 200


async def test_routes_methods_and_head() -> None:
    async with serving({}) as (url, _):
        missing = await get(url + "/nope")
        post = await get(url + "/metrics", method="POST")
        head = await get(url + "/metrics", method="HEAD")
        with_query = await get(url + "/healthz?verbose=1")
    assert missing.status == 404
    assert post.status == 405 and post.headers["Allow"] == "GET, HEAD"
    assert head.status == 200 and head.body == b"" and int(head.headers["Content-Length"]) > 0
    assert with_query.status == 200


async def test_malformed_and_oversized_requests_are_refused() -> None:
    async with serving({}) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"NONSENSE\r\n\r\n")
        reply = await reader.read()
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\nX: " + b"y" * 20_000 + b"\r\n\r\n")
        oversized = await reader.read()
        writer.close()
        still_serving = await get(url + "/healthz")
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert oversized == b""
    assert still_serving.status == 200


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text("s3cret\n")
    return path


@pytest.mark.parametrize("kind", ["password_file", "password_hash"])
async def test_basic_auth(kind: str, password_file: Path) -> None:
    auth: dict[str, Any] = {"user": "prometheus"}
    if kind == "password_file":
        auth["password_file"] = password_file
    else:
        auth["password_hash"] = hash_password("s3cret", iterations=1000)
    async with serving({}, basic_auth=auth) as (url, _):
        anonymous = await get(url + "/metrics")
        wrong_password = await get(url + "/metrics", auth=("prometheus", "guess"))
        wrong_user = await get(url + "/metrics", auth=("root", "s3cret"))
        right = await get(url + "/metrics", auth=("prometheus", "s3cret"))
        again = await get(url + "/healthz", auth=("prometheus", "s3cret"))
        wrong_after_right = await get(url + "/metrics", auth=("prometheus", "s3cret!"))
    assert anonymous.status == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="damond"'
    assert wrong_password.status == 401 and wrong_user.status == 401
    assert right.status == 200 and b"damond_build_info" in right.body
    assert again.status == 200
    assert wrong_after_right.status == 401


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    openssl = require_binary("openssl", "openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    trusting = ssl.create_default_context(cafile=str(cert))
    async with serving({}, tls={"cert_file": cert, "key_file": key}) as (url, _):
        over_tls = await get(url + "/metrics", context=trusting)
        with pytest.raises((OSError, http.client.HTTPException)):
            await get(url.replace("https://", "http://") + "/metrics")
        with pytest.raises(urllib.error.URLError) as untrusted:
            await get(url + "/metrics", context=ssl.create_default_context())
    assert isinstance(untrusted.value.reason, ssl.SSLCertVerificationError)
    assert over_tls.status == 200 and b"damond_build_info" in over_tls.body


async def test_cancelling_closes_the_listener_and_open_connections() -> None:
    async with serving({}) as (url, task):
        port = int(url.rsplit(":", 1)[1])
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
        task.cancel()
        async with asyncio.timeout(2.0):
            assert await idle_reader.read() == b""  # closed by the server, not by a timeout
        idle_writer.close()
    assert task.cancelled()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_retries_while_the_address_is_in_use() -> None:
    port = free_port()
    blocker = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
    config = MetricsConfig(listen=f"127.0.0.1:{port}")
    metrics = DaemonMetrics(SimBackend(SimulationConfig(), (), lambda: 0.0), mqtt_enabled=False)
    endpoint = MetricsEndpoint(config, metrics, lambda: {}, INTERVAL_S)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(endpoint.serve())
        await asyncio.sleep(0.2)
        assert not task.done()  # the failure to bind did not end the service
        blocker.close()
        await blocker.wait_closed()
        reply = await until_answered(f"http://127.0.0.1:{port}/healthz")
        task.cancel()
    assert reply.status == 200


async def until_answered(url: str, timeout_s: float = 10.0) -> Reply:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await get(url, timeout=1.0)
        except (OSError, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


def two_requests_on_one_connection(port: int) -> tuple[int, int, bool]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/healthz")
    first = conn.getresponse()
    first.read()
    sock = conn.sock
    conn.request("GET", "/metrics")
    second = conn.getresponse()
    second.read()
    reused = conn.sock is sock and sock is not None
    conn.close()
    return first.status, second.status, reused


async def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    async with serving({}) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        first, second, reused = await asyncio.to_thread(two_requests_on_one_connection, port)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
        closing = await reader.read()  # EOF: the server closed after answering
        writer.close()
    assert (first, second, reused) == (200, 200, True)
    assert closing.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nConnection: close\r\n" in closing


async def test_connections_beyond_the_cap_are_closed() -> None:
    async with serving({}) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(MAX_CONNECTIONS)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
        try:
            refused = await reader.read()
        except ConnectionResetError:  # closed with the request unread
            refused = b""
        writer.close()
        for _, idle_writer in idle:
            idle_writer.close()
        await asyncio.sleep(0.1)
        served = await get(url + "/healthz")
    assert refused == b""
    assert served.status == 200
