"""The HTTP endpoint: ``/metrics`` for Prometheus, ``/healthz`` for probes, ``/status``.

aiohttp serves it in the daemon's event loop, as one service of the supervisor's
TaskGroup: cancelling the service closes the listener and every connection.
prometheus-client renders ``/metrics`` from a private registry (damond's families,
read from the loops' statuses, plus the standard ``process_*`` and
``python_info`` collectors), in the format the ``Accept`` header asks for (text
or OpenMetrics), gzipped when ``Accept-Encoding`` allows.

What keeps a client from hurting the control loops or locking out probes:
aiohttp's limits (request line and header fields 8 KiB, 100 header fields: 400
beyond), idle and keep-alive timeouts, the connection cap of
:mod:`damond.metrics.connections`, a rendering reused for :data:`RENDER_REUSE_S`
(so that any number of scrapes costs at most one rendering per format per
interval), and basic auth checked off the loop (:mod:`damond.metrics.auth`).

A failure to start (address in use, a web configuration file that does not load)
is logged and retried with backoff: the control loops matter more than their metrics.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import math
import ssl
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import structlog
from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.exposition import (
    CONTENT_TYPE_PLAIN_0_0_4,
    choose_encoder,
    generate_latest,
    gzip_accepted,
)
from prometheus_client.openmetrics import exposition as openmetrics

from damond.config import MetricsConfig, parse_listen
from damond.control.status import ContextStatus, silent_contexts
from damond.metrics.auth import BasicAuth, Verdict
from damond.metrics.connections import ConnectionGuard, Handler
from damond.metrics.exporter import DaemonMetrics, StatusCollector
from damond.metrics.goals import GoalSource, no_goals
from damond.metrics.statusdoc import TargetSource, config_only, status_document
from damond.metrics.webconfig import WebConfig, WebConfigError, load_web_config, server_ssl_context

HANDSHAKE_TIMEOUT_S = 10.0
KEEPALIVE_TIMEOUT_S = 20.0
"""How long a connection may wait for its (next) request; above Prometheus's default
15 s scrape interval, so that a scraper keeps its connection."""
MAX_LINE_BYTES = 8190
MAX_FIELD_BYTES = 8190
MAX_HEADERS = 100
SHUTDOWN_TIMEOUT_S = 1.0
RENDER_REUSE_S = 1.0
RETRY_BASE_S = 1.0
RETRY_CAP_S = 30.0
STALE_AFTER_INTERVALS = 3
"""/healthz answers 503 for a context without an iteration in this many intervals."""
REALM = 'Basic realm="damond"'

Statuses = Callable[[], Mapping[str, ContextStatus]]


class _NoBadRequestTracebacks(logging.Filter):
    """A malformed request is the client's error and its answer (400) says why; the
    journal gets no traceback for it. Failures of damond's own handlers still log."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, HttpProcessingError)


_HTTP_LOG = logging.getLogger("damond.metrics.http")
_HTTP_LOG.addFilter(_NoBadRequestTracebacks())


def negotiate(accept: str) -> tuple[Callable[[CollectorRegistry], bytes], str]:
    """prometheus-client's choice of encoder and content type for ``accept``, made canonical.

    An OpenMetrics version is answered as ``1.0.0`` or ``2.0.0`` (for damond's families
    the output does not depend on the minor version), so that a client cannot make
    every request a new format to render; an unparseable one gets the text format, as
    no ``Accept`` would. prometheus-client's OpenMetrics encoder escapes every sample
    name character by character for the ``underscores`` escaping; every damond, process
    and python name is a plain legacy name, which that escaping leaves as it is, so the
    encoder's faster path (``allow-utf-8``) writes the same bytes.
    """
    try:
        encoder, content_type = choose_encoder(accept)
    except (TypeError, ValueError):
        return generate_latest, CONTENT_TYPE_PLAIN_0_0_4
    if isinstance(encoder, partial) and encoder.func is openmetrics.generate_latest:
        version = str(encoder.keywords.get("version", "1.0.0"))
        canonical = "1.0.0" if version.startswith("1.") else "2.0.0"
        content_type = content_type.replace(f"version={version}", f"version={canonical}")
        escaping = encoder.keywords.get("escaping", openmetrics.UNDERSCORES)
        if escaping == openmetrics.UNDERSCORES:
            escaping = openmetrics.ALLOWUTF8
        encoder = partial(openmetrics.generate_latest, escaping=escaping, version=canonical)
    return encoder, content_type


class MetricsEndpoint:
    def __init__(
        self,
        cfg: MetricsConfig,
        metrics: DaemonMetrics,
        statuses: Statuses,
        interval_s: float,
        target_source: TargetSource = config_only,
        goals: GoalSource = no_goals,
    ) -> None:
        self.cfg = cfg
        self.statuses = statuses
        self.interval_s = interval_s
        self.target_source = target_source
        self.goals = goals
        self.host, self.port = parse_listen(cfg.listen)
        self.log = structlog.get_logger("damond.metrics").bind(listen=cfg.listen)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StatusCollector(metrics, statuses))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.render_reuse_s = RENDER_REUSE_S
        self._renders: dict[tuple[str, bool], tuple[float, bytes]] = {}
        self._auth: BasicAuth | None = None
        self._headers: Mapping[str, str] = {}

    async def serve(self) -> None:
        """The supervisor service: serve until cancelled."""
        delay = RETRY_BASE_S
        while True:
            try:
                web_config, ssl_context = await asyncio.to_thread(self._web_config)
                runner, listener = await self._start(web_config, ssl_context)
            except (OSError, ssl.SSLError, WebConfigError) as exc:
                self.log.error(
                    "metrics endpoint cannot start; retrying", error=str(exc), retry_in_s=delay
                )
                await asyncio.sleep(delay)
                delay = min(RETRY_CAP_S, delay * 2)
                continue
            self.log.info(
                "metrics endpoint listening",
                tls=web_config.tls is not None,
                basic_auth=bool(web_config.users),
            )
            try:
                await listener.serve_forever()
            finally:
                listener.close()
                await runner.cleanup()

    def _web_config(self) -> tuple[WebConfig, ssl.SSLContext | None]:
        """The web configuration and its TLS context (file I/O: run in a thread)."""
        path: Path | None = self.cfg.web_config_file
        web_config = WebConfig() if path is None else load_web_config(path)
        tls = web_config.tls
        return web_config, None if tls is None else server_ssl_context(tls)

    async def _start(
        self, web_config: WebConfig, ssl_context: ssl.SSLContext | None
    ) -> tuple[web.AppRunner, asyncio.Server]:
        self._auth = BasicAuth(web_config.users) if web_config.users else None
        self._headers = web_config.headers
        guard = ConnectionGuard()
        app = web.Application(middlewares=[guard.middleware, self._protect])
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/status", self._status)
        runner = web.AppRunner(
            app,
            access_log=None,
            logger=_HTTP_LOG,
            keepalive_timeout=KEEPALIVE_TIMEOUT_S,
            max_line_size=MAX_LINE_BYTES,
            max_field_size=MAX_FIELD_BYTES,
            max_headers=MAX_HEADERS,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        )
        await runner.setup()
        guard.server = runner.server
        try:
            listener = await asyncio.get_running_loop().create_server(
                guard.protocol,
                self.host,
                self.port,
                ssl=ssl_context,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S if ssl_context else None,
                reuse_address=True,
            )
        except BaseException:
            await runner.cleanup()
            raise
        return runner, listener

    @web.middleware
    async def _protect(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Basic auth (when configured) on every path, and the configured headers."""
        if self._auth is not None:
            address = request.remote or "unknown"
            verdict = await self._auth.check(request.headers.get(hdrs.AUTHORIZATION), address)
            if verdict is Verdict.LIMITED:
                retry = math.ceil(self._auth.limiter.retry_after_s(address))
                return web.Response(
                    status=429,
                    text="too many failed logins; retry later\n",
                    headers={hdrs.RETRY_AFTER: str(max(1, retry)), **self._headers},
                )
            if verdict is Verdict.DENIED:
                return web.Response(
                    status=401,
                    text="authentication required\n",
                    headers={hdrs.WWW_AUTHENTICATE: REALM, **self._headers},
                )
        response = await handler(request)
        response.headers.update(self._headers)
        return response

    async def _metrics(self, request: web.Request) -> web.Response:
        accept = ",".join(request.headers.getall(hdrs.ACCEPT, []))
        encoding = ",".join(request.headers.getall(hdrs.ACCEPT_ENCODING, []))
        encoder, content_type = negotiate(accept)
        gzipped = gzip_accepted(encoding)
        body = self.render(encoder, content_type, gzipped)
        headers = {hdrs.CONTENT_TYPE: content_type}
        if gzipped:
            headers[hdrs.CONTENT_ENCODING] = "gzip"
        return web.Response(body=body, headers=headers)

    def render(
        self, encoder: Callable[[CollectorRegistry], bytes], content_type: str, gzipped: bool
    ) -> bytes:
        """The exposition, rendered at most once per :attr:`render_reuse_s` per variant."""
        now = time.monotonic()
        key = (content_type, gzipped)
        cached = self._renders.get(key)
        if cached is not None and now - cached[0] < self.render_reuse_s:
            return cached[1]
        body = encoder(self.registry)
        if gzipped:
            body = gzip.compress(body, compresslevel=1)
        self._renders[key] = (now, body)
        return body

    async def _healthz(self, _: web.Request) -> web.Response:
        statuses = self.statuses()
        stale = silent_contexts(statuses, STALE_AFTER_INTERVALS * self.interval_s, time.monotonic())
        body = {"status": "stale" if stale else "ok", "contexts": len(statuses), "stale": stale}
        return web.json_response(body, status=503 if stale else 200)

    async def _status(self, _: web.Request) -> web.Response:
        document = status_document(self.statuses(), self.target_source, self.goals)
        return web.Response(
            text=json.dumps(document, indent=1) + "\n", content_type="application/json"
        )
