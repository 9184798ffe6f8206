"""The HTTP endpoint: ``/metrics`` for Prometheus and ``/healthz`` for probes.

A small asyncio HTTP/1.1 server (GET and HEAD, one request per connection)
rather than prometheus-client's threaded one: it runs in the daemon's event
loop under its TaskGroup, so cancelling the service closes the listener and
every open connection, and a scrape reads the loops' statuses without locks.
TLS and basic auth are optional (see :mod:`damond.endpointauth`).

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
from damond.endpointauth import (
    BasicAuth,
    PasswordHash,
    read_password_file,
    server_ssl_context,
)
from damond.exporter import DaemonMetrics
from damond.health import stale_contexts
from damond.loop import ContextStatus

REQUEST_TIMEOUT_S = 10.0
MAX_HEADER_BYTES = 16 * 1024
RETRY_BASE_S = 1.0
RETRY_CAP_S = 30.0
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
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
                writer.write(self._respond(head))
                await writer.drain()
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
            TimeoutError,
            ssl.SSLError,
        ) as exc:
            self.log.debug("metrics request dropped", error=repr(exc))
        except Exception:
            self.log.exception("metrics request failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    def _respond(self, head: bytes) -> bytes:
        request = head.decode("latin-1").split("\r\n")
        parts = request[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return _encode("GET", (HTTPStatus.BAD_REQUEST, "text/plain", b"bad request\n", {}))
        method, target, _ = parts
        headers: dict[str, str] = {}
        for line in request[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return _encode(method, self._route(method, target.split("?", 1)[0], headers))

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
        stale = stale_contexts(statuses, self.interval_s, time.monotonic())
        body = {"status": "stale" if stale else "ok", "contexts": len(statuses), "stale": stale}
        code = HTTPStatus.SERVICE_UNAVAILABLE if stale else HTTPStatus.OK
        return (code, "application/json", json.dumps(body).encode() + b"\n", {})


def _encode(method: str, response: Response) -> bytes:
    code, content_type, body, extra = response
    lines = [
        f"HTTP/1.1 {code.value} {code.phrase}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if method == "HEAD" else head + body
