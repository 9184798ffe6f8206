"""The HTTP endpoint: ``/metrics`` for Prometheus and ``/healthz`` for probes.

A small asyncio HTTP/1.1 server (GET and HEAD, keep-alive as Prometheus
uses it) rather than prometheus-client's threaded one: it runs in the daemon's event
loop under its TaskGroup, so cancelling the service closes the listener and
every open connection, and a scrape reads the loops' statuses without locks.
TLS and basic auth are optional (see :mod:`damond.metrics.auth`).

A failure to start (address in use, unreadable certificate) is logged and
retried with backoff: the control loops matter more than their metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus

import structlog

from damond.config import MetricsConfig, parse_listen
from damond.config.passwordhash import PasswordHash
from damond.control.status import ContextStatus, silent_contexts
from damond.metrics.auth import (
    BasicAuth,
    read_password_file,
    server_ssl_context,
)
from damond.metrics.exporter import DaemonMetrics

REQUEST_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 120.0
"""How long a kept-alive connection may wait for its next request (scrape)."""
MAX_CONNECTIONS = 64
MAX_HEADER_BYTES = 16 * 1024
RETRY_BASE_S = 1.0
RETRY_CAP_S = 30.0
STALE_AFTER_INTERVALS = 3
"""/healthz answers 503 for a context without an iteration in this many intervals."""
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Response = tuple[HTTPStatus, str, bytes, dict[str, str]]


class MetricsEndpoint:
    def __init__(
        self,
        cfg: MetricsConfig,
        metrics: DaemonMetrics,
        statuses: Callable[[], Mapping[str, ContextStatus]],
        interval_s: float,
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.statuses = statuses
        self.interval_s = interval_s
        self.host, self.port = parse_listen(cfg.listen)
        self.log = structlog.get_logger("damond.metrics").bind(listen=cfg.listen)
        self._auth: BasicAuth | None = None
        self._open_connections = 0

    async def serve(self) -> None:
        """The supervisor service: serve until cancelled."""
        delay = RETRY_BASE_S
        async with asyncio.TaskGroup() as connections:
            while True:
                try:
                    server = await self._start(connections)
                except (OSError, ssl.SSLError, ValueError) as exc:
                    self.log.error(
                        "metrics endpoint cannot start; retrying", error=str(exc), retry_in_s=delay
                    )
                    await asyncio.sleep(delay)
                    delay = min(RETRY_CAP_S, delay * 2)
                    continue
                self.log.info(
                    "metrics endpoint listening",
                    tls=self.cfg.tls is not None,
                    basic_auth=self._auth is not None,
                )
                async with server:
                    await server.serve_forever()

    async def _start(self, connections: asyncio.TaskGroup) -> asyncio.Server:
        ssl_context = None
        if self.cfg.tls is not None:
            ssl_context = server_ssl_context(self.cfg.tls.cert_file, self.cfg.tls.key_file)
        auth = self.cfg.basic_auth
        if auth is None:
            self._auth = None
        elif auth.password_file is not None:
            self._auth = BasicAuth(auth.user, read_password_file(auth.password_file), None)
        else:
            self._auth = BasicAuth(auth.user, None, PasswordHash.parse(auth.password_hash or ""))

        def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            handler = self._handle(reader, writer)
            try:
                connections.create_task(handler)
            except RuntimeError:  # shutting down
                handler.close()
                writer.close()

        return await asyncio.start_server(
            accept,
            self.host,
            self.port,
            ssl=ssl_context,
            ssl_handshake_timeout=REQUEST_TIMEOUT_S if ssl_context else None,
            limit=MAX_HEADER_BYTES,
        )

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection: requests in turn while the client keeps it alive."""
        if self._open_connections >= MAX_CONNECTIONS:
            writer.close()
            return
        self._open_connections += 1
        wait_s = REQUEST_TIMEOUT_S
        try:
            keep_alive = True
            while keep_alive:
                async with asyncio.timeout(wait_s):
                    head = await reader.readuntil(b"\r\n\r\n")
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    response, keep_alive = self._respond(head)
                    writer.write(response)
                    await writer.drain()
                wait_s = IDLE_TIMEOUT_S
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                self.log.debug("metrics request cut short", received=len(exc.partial))
        except (asyncio.LimitOverrunError, ConnectionError, TimeoutError, ssl.SSLError) as exc:
            self.log.debug("metrics connection dropped", error=repr(exc))
        except Exception:
            self.log.exception("metrics request failed")
        finally:
            self._open_connections -= 1
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    def _respond(self, head: bytes) -> tuple[bytes, bool]:
        """The response to one request head, and whether the connection stays open."""
        request = head.decode("latin-1").split("\r\n")
        parts = request[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            bad: Response = (HTTPStatus.BAD_REQUEST, "text/plain", b"bad request\n", {})
            return _encode("GET", bad, keep_alive=False), False
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in request[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        keep_alive = (
            version == "HTTP/1.1"
            and headers.get("connection", "").lower() != "close"
            # a request body is not read; the connection cannot carry another request
            and headers.get("content-length", "0") == "0"
            and "transfer-encoding" not in headers
        )
        response = self._route(method, target.split("?", 1)[0], headers)
        return _encode(method, response, keep_alive), keep_alive

    def _route(self, method: str, path: str, headers: Mapping[str, str]) -> Response:
        if self._auth is not None and not self._auth.allows(headers.get("authorization")):
            return (
                HTTPStatus.UNAUTHORIZED,
                "text/plain",
                b"authentication required\n",
                {"WWW-Authenticate": 'Basic realm="damond"'},
            )
        if path not in ("/metrics", "/healthz"):
            return (HTTPStatus.NOT_FOUND, "text/plain", b"try /metrics or /healthz\n", {})
        if method not in ("GET", "HEAD"):
            return (
                HTTPStatus.METHOD_NOT_ALLOWED,
                "text/plain",
                b"only GET and HEAD\n",
                {"Allow": "GET, HEAD"},
            )
        statuses = self.statuses()
        if path == "/metrics":
            return (HTTPStatus.OK, METRICS_CONTENT_TYPE, self.metrics.render(statuses), {})
        stale = silent_contexts(statuses, STALE_AFTER_INTERVALS * self.interval_s, time.monotonic())
        body = {"status": "stale" if stale else "ok", "contexts": len(statuses), "stale": stale}
        code = HTTPStatus.SERVICE_UNAVAILABLE if stale else HTTPStatus.OK
        return (code, "application/json", json.dumps(body).encode() + b"\n", {})


def _encode(method: str, response: Response, keep_alive: bool) -> bytes:
    code, content_type, body, extra = response
    lines = [
        f"HTTP/1.1 {code.value} {code.phrase}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: keep-alive" if keep_alive else "Connection: close",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if method == "HEAD" else head + body
