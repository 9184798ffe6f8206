"""HTTP basic auth against the web configuration's bcrypt hashes, without stalling the loop.

bcrypt is slow on purpose, so: the check runs in a worker thread (never on the
event loop), at most :data:`CONCURRENT_CHECKS` at a time; credentials that passed
are remembered by a SHA-256 of user and password (as exporter-toolkit caches
them), so a scraper presenting them again costs one hash; and each client
address may fail only so often (a token bucket): beyond it the answer is 429
at once, without a check.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from damond.config.service import MetricsConfig
from damond.metrics.webconfig import WebConfigError, load_web_config

CONCURRENT_CHECKS = 2
CACHED_CREDENTIALS = 64
FAILURE_BURST = 5
"""Failed attempts a client address may make at once ..."""
FAILURE_REFILL_S = 2.0
"""... and then one per this many seconds."""
TRACKED_ADDRESSES = 4096
_UNKNOWN_USER_HASH = b"$2b$10$" + b"." * 53
"""Checked for unknown users so that they take as long as known ones (never matches)."""


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    DENIED = "denied"
    LIMITED = "limited"


@dataclass
class _Bucket:
    tokens: float
    updated: float


class FailureLimiter:
    """A token bucket of failed attempts per client address."""

    def __init__(
        self,
        burst: int = FAILURE_BURST,
        refill_s: float = FAILURE_REFILL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.refill_s = refill_s
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, address: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= TRACKED_ADDRESSES:
                self._forget_full(now)
            bucket = self._buckets[address] = _Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) / self.refill_s)
            bucket.updated = now
        return bucket

    def retry_after_s(self, address: str) -> float:
        """0 if ``address`` may try now, else the seconds until it may."""
        bucket = self._bucket(address)
        return 0.0 if bucket.tokens >= 1 else (1 - bucket.tokens) * self.refill_s

    def failed(self, address: str) -> None:
        bucket = self._bucket(address)
        bucket.tokens = max(0.0, bucket.tokens - 1)

    def _forget_full(self, now: float) -> None:
        full = [
            a
            for a, b in self._buckets.items()
            if b.tokens + (now - b.updated) / self.refill_s >= self.burst
        ]
        for address in full or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[address]


def parse_basic(header: str | None) -> tuple[bytes, bytes] | None:
    """The user and password of an ``Authorization: Basic`` header, None if it is not one."""
    if header is None:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    return (user, password) if sep else None


class BasicAuth:
    """Checks ``Authorization`` headers against the users of the web configuration."""

    def __init__(self, users: Mapping[str, bytes], limiter: FailureLimiter | None = None):
        self._users = {user.encode(): hashed for user, hashed in users.items()}
        self._accepted: OrderedDict[bytes, None] = OrderedDict()
        self._checks = asyncio.Semaphore(CONCURRENT_CHECKS)
        self.limiter = limiter or FailureLimiter()

    async def check(self, header: str | None, address: str) -> Verdict:
        credentials = parse_basic(header)
        if credentials is None:
            return Verdict.DENIED
        user, password = credentials
        key = hashlib.sha256(user + b":" + password).digest()
        if key in self._accepted:
            self._accepted.move_to_end(key)
            return Verdict.ALLOWED
        if self.limiter.retry_after_s(address) > 0:
            return Verdict.LIMITED
        hashed = self._users.get(user)
        async with self._checks:
            if self.limiter.retry_after_s(address) > 0:  # failures of those checked meanwhile
                return Verdict.LIMITED
            matches = await asyncio.to_thread(
                _password_matches, password, hashed or _UNKNOWN_USER_HASH
            )
        if matches and hashed is not None:
            self._accepted[key] = None
            if len(self._accepted) > CACHED_CREDENTIALS:
                self._accepted.popitem(last=False)
            return Verdict.ALLOWED
        self.limiter.failed(address)
        return Verdict.DENIED


def _password_matches(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # a malformed hash never matches
        return False


def endpoint_file_errors(metrics: MetricsConfig) -> list[str]:
    """Why the web configuration file cannot serve the endpoint (empty when it can)."""
    if not metrics.enabled or metrics.web_config_file is None:
        return []
    return web_config_errors(metrics.web_config_file)


def web_config_errors(path: Path) -> list[str]:
    try:
        load_web_config(path)
    except WebConfigError as exc:
        return exc.errors
    return []
