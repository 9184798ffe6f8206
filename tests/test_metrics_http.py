"""The metrics endpoint over real loopback sockets: routes, health, formats, the web
configuration's TLS and basic auth, and the connection cap."""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import ssl
import time
import urllib.error
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from damond.backend.simulated.backend import SimBackend
from damond.config import MetricsConfig, SimulationConfig
from damond.control.status import ContextStatus
from damond.metrics.connections import MAX_CONNECTIONS
from damond.metrics.endpoint import MetricsEndpoint
from damond.metrics.exporter import DaemonMetrics
from tests.exporter_helpers import (
    Reply,
    bcrypt_hash,
    http_get,
    make_certificate,
    openmetrics_families,
    write_web_config,
)
from tests.tools import free_port

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
    statuses: dict[str, ContextStatus], *, tls: bool = False, **cfg: Any
) -> AsyncIterator[tuple[str, asyncio.Task[None]]]:
    port = free_port()
    config = MetricsConfig(listen=f"127.0.0.1:{port}", **cfg)
    metrics = DaemonMetrics(SimBackend(SimulationConfig(), (), lambda: 0.0), mqtt_enabled=False)
    endpoint = MetricsEndpoint(config, metrics, lambda: statuses, INTERVAL_S)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(endpoint.serve())
        await until_listening(port)
        scheme = "https" if tls else "http"
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
    assert {"damond_context_up", "damond_goal_target_ratio", "damond_context_held"} <= families
    # prometheus-client's standard collectors
    assert {"process_resident_memory_bytes", "process_cpu_seconds", "python_info"} <= families
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
    assert post.status == 405 and post.headers["Allow"] == "GET,HEAD"
    assert head.status == 200 and head.body == b"" and int(head.headers["Content-Length"]) > 0
    assert with_query.status == 200


async def test_openmetrics_and_gzip_are_negotiated() -> None:
    statuses = {"a": status("a", 0.1)}
    openmetrics = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    async with serving(statuses) as (url, _):
        om = await get(url + "/metrics", headers={"Accept": openmetrics})
        zipped = await get(url + "/metrics", headers={"Accept-Encoding": "gzip"})
        plain = await get(url + "/metrics")
    assert om.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert om.body.endswith(b"# EOF\n")
    names = {f.name for f in openmetrics_families(om.body.decode())}
    assert {"damond_context_up", "damond_scheme_applied_bytes", "process_cpu_seconds"} <= names
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.body).startswith(b"# HELP")
    assert "Content-Encoding" not in plain.headers


async def test_odd_accept_headers_get_a_canonical_format() -> None:
    accepts = {
        "application/openmetrics-text;version=1.0.7": "version=1.0.0;",
        "application/openmetrics-text;version=1.9.9": "version=1.0.0;",
        "application/openmetrics-text;version=abc": "text/plain; version=0.0.4;",
        "application/openmetrics-text;version=0.0.1": "text/plain; version=0.0.4;",
    }
    async with serving({"a": status("a", 0.1)}) as (url, _):
        replies = {a: await get(url + "/metrics", headers={"Accept": a}) for a in accepts}
    for accept, expected in accepts.items():
        reply = replies[accept]
        assert reply.status == 200, (accept, reply.body)
        assert expected in reply.headers["Content-Type"], accept


async def test_status_reports_each_context_and_who_set_its_target() -> None:
    held = status("b", 0.2)
    held.held, held.held_reason, held.metric_bp, held.quota_bytes = True, "conflict", 5800, 4096
    statuses = {"a": status("a", 0.1), "b": held}
    async with serving(statuses) as (url, _):
        reply = await get(url + "/status")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("application/json")
    contexts = {c["name"]: c for c in json.loads(reply.body)["contexts"]}
    assert contexts["b"] == contexts["b"] | {
        "goal_metric": "node_target_mem_bp",
        "node": 0,
        "target_bp": 6000,
        "target_set_by": {"layer": "config", "generation": None},
        "metric_bp": 5800,
        "quota_bytes": 4096,
        "held": True,
        "held_reason": "conflict",
        "up": True,
        "iterations": 1,
    }
    assert contexts["a"]["held"] is False and contexts["a"]["held_reason"] is None


async def test_basic_auth_from_the_web_config_file(tmp_path: Path) -> None:
    users = {"prometheus": bcrypt_hash("s3cret"), "grafana": bcrypt_hash("other")}
    web = write_web_config(tmp_path / "web.yml", {"basic_auth_users": users})
    async with serving({}, web_config_file=web) as (url, _):
        anonymous = await get(url + "/metrics")
        wrong_password = await get(url + "/metrics", auth=("prometheus", "guess"))
        wrong_user = await get(url + "/metrics", auth=("root", "s3cret"))
        right = await get(url + "/metrics", auth=("prometheus", "s3cret"))
        again = await get(url + "/healthz", auth=("prometheus", "s3cret"))
        second_user = await get(url + "/status", auth=("grafana", "other"))
        wrong_after_right = await get(url + "/metrics", auth=("prometheus", "s3cret!"))
    assert anonymous.status == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="damond"'
    assert wrong_password.status == 401 and wrong_user.status == 401
    assert right.status == 200 and b"damond_build_info" in right.body
    assert again.status == 200 and second_user.status == 200
    assert wrong_after_right.status == 401


async def test_failed_logins_are_limited_per_client_address(tmp_path: Path) -> None:
    web = write_web_config(tmp_path / "web.yml", {"basic_auth_users": {"p": bcrypt_hash("pw")}})
    async with serving({}, web_config_file=web) as (url, _):
        guesses = [await get(url + "/metrics", auth=("p", f"guess{i}")) for i in range(8)]
        right_but_limited = await get(url + "/metrics", auth=("p", "pw"))
    codes = [reply.status for reply in guesses]
    assert codes[:5] == [401] * 5  # the burst of failures each get a check
    assert codes[5:] == [429] * 3  # then no check at all until the bucket refills
    assert int(guesses[-1].headers["Retry-After"]) >= 1
    assert right_but_limited.status == 429


async def test_concurrent_wrong_guesses_get_no_more_checks_than_the_limit(tmp_path: Path) -> None:
    web = write_web_config(tmp_path / "web.yml", {"basic_auth_users": {"p": bcrypt_hash("pw")}})
    loop = asyncio.get_running_loop()
    # the clients' own threads: the default executor is the server's, for its checks
    with ThreadPoolExecutor(20) as clients:
        async with serving({}, web_config_file=web) as (url, _):
            replies = await asyncio.gather(
                *(
                    loop.run_in_executor(
                        clients, partial(http_get, url + "/metrics", auth=("p", f"guess{i}"))
                    )
                    for i in range(20)
                )
            )
    codes = sorted(reply.status for reply in replies)
    assert set(codes) == {401, 429}
    assert codes.count(401) <= 6  # the burst of 5, and perhaps one refilled meanwhile


async def test_tls_from_the_web_config_file_with_relative_paths(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    web = write_web_config(
        tmp_path / "web.yml",
        {"tls_server_config": {"cert_file": cert.name, "key_file": key.name}},
    )
    trusting = ssl.create_default_context(cafile=str(cert))
    async with serving({}, tls=True, web_config_file=web) as (url, _):
        over_tls = await get(url + "/metrics", context=trusting)
        with pytest.raises((OSError, http.client.HTTPException)):
            await get(url.replace("https://", "http://") + "/metrics")
        with pytest.raises(urllib.error.URLError) as untrusted:
            await get(url + "/metrics", context=ssl.create_default_context())
    assert isinstance(untrusted.value.reason, ssl.SSLCertVerificationError)
    assert over_tls.status == 200 and b"damond_build_info" in over_tls.body


async def test_client_certificates_are_required_and_verified(tmp_path: Path) -> None:
    ca = make_certificate(tmp_path, "ca")
    server = make_certificate(tmp_path, "server", ca)
    client = make_certificate(tmp_path, "client", ca)
    stranger = make_certificate(tmp_path, "stranger")
    web = write_web_config(
        tmp_path / "web.yml",
        {
            "tls_server_config": {
                "cert_file": str(server[0]),
                "key_file": str(server[1]),
                "client_auth_type": "RequireAndVerifyClientCert",
                "client_ca_file": "ca.pem",
                "min_version": "TLS13",
            }
        },
    )

    def client_context(pair: tuple[Path, Path] | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(ca[0]))
        if pair is not None:
            context.load_cert_chain(*pair)
        return context

    async with serving({}, tls=True, web_config_file=web) as (url, _):
        admitted = await get(url + "/healthz", context=client_context(client))
        for refused in (None, stranger):
            with pytest.raises((OSError, http.client.HTTPException)):
                await get(url + "/healthz", context=client_context(refused))
    assert admitted.status == 200


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
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        closing = await reader.read()  # EOF: the server closed after answering
        writer.close()
    assert (first, second, reused) == (200, 200, True)
    assert closing.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nConnection: close\r\n" in closing


async def test_idle_connections_beyond_the_cap_make_room_for_new_ones() -> None:
    async with serving({"a": status("a", 0.1)}) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        idle = [
            await asyncio.open_connection("127.0.0.1", port) for _ in range(3 * MAX_CONNECTIONS)
        ]
        await asyncio.sleep(0.1)
        served = await get(url + "/healthz")
        closed = 0
        for reader, writer in idle:
            try:
                async with asyncio.timeout(0.01):
                    closed += await reader.read() == b""
            except (TimeoutError, ConnectionResetError):
                pass
            writer.close()
    assert served.status == 200
    assert closed >= 2 * MAX_CONNECTIONS  # the idlest were closed to make room
