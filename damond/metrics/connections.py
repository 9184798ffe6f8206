"""A cap on the endpoint's open connections that idle clients cannot use to lock others out.

Beyond :data:`MAX_CONNECTIONS`, a new connection is still accepted, and the one
that has been idle longest (no request in progress: a kept-alive scraper between
scrapes, a client that connected and sent nothing, one trickling its headers) is
closed to make room. A probe of ``/healthz`` therefore always gets in, however
many idle or slow connections are open; connections that are answering a request
are never closed, and answering takes bounded time.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

MAX_CONNECTIONS = 64

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ConnectionGuard:
    """Tracks which connections are busy and when each was last active."""

    def __init__(self, limit: int = MAX_CONNECTIONS) -> None:
        self.server: web.Server | None = None
        """aiohttp's server (set once its runner is set up), which makes the connections."""
        self.limit = limit
        self._last_active: dict[RequestHandler, float] = {}
        self._busy: set[RequestHandler] = set()

    def protocol(self) -> RequestHandler:
        """The protocol factory of the listening socket: a new connection, room made."""
        if self.server is None:
            raise RuntimeError("the connection guard has no server yet")
        handler = self.server()
        open_now = self.server.connections
        if len(open_now) >= self.limit or len(self._last_active) >= 2 * self.limit:
            self._forget_closed(open_now)
        if len(open_now) >= self.limit:
            self._evict_idlest(open_now)
        self._last_active[handler] = time.monotonic()
        return handler

    def _forget_closed(self, open_now: list[RequestHandler]) -> None:
        alive = set(open_now)
        for gone in [h for h in self._last_active if h not in alive]:
            del self._last_active[gone]
        self._busy &= alive

    def _evict_idlest(self, open_now: list[RequestHandler]) -> None:
        idle = [h for h in open_now if h not in self._busy]
        if idle:
            idlest = min(idle, key=lambda h: self._last_active.get(h, 0.0))
            self._last_active.pop(idlest, None)
            idlest.force_close()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Marks the request's connection busy while it is answered."""
        protocol = request.protocol
        if not isinstance(protocol, RequestHandler):
            return await handler(request)
        self._busy.add(protocol)
        try:
            return await handler(request)
        finally:
            self._busy.discard(protocol)
            self._last_active[protocol] = time.monotonic()
