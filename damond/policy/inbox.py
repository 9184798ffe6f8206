"""Rate limiting without an unbounded queue: one pending message per scope.

Messages that arrive faster than the configured rate wait in a slot per scope;
a message that ranks higher (a newer generation) replaces (supersedes) the
waiting one, so memory stays bounded and the newest intent of each scope wins.
Only messages that passed screening are offered: junk never displaces a valid one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
T = TypeVar("T")


class TokenBucket:
    """``rate`` events per second on average, bursts of up to ``burst``."""

    def __init__(
        self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(1.0, rate if burst is None else burst)
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def delay(self) -> float:
        """Seconds until one token is available (0 if one is)."""
        self._refill()
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate

    def take(self) -> None:
        self._refill()
        self._tokens -= 1


class CoalescingInbox(Generic[K, T]):
    def __init__(self, bucket: TokenBucket, rank: Callable[[T], int]) -> None:
        self._bucket = bucket
        self._rank = rank
        self._pending: dict[K, T] = {}
        self._arrived = asyncio.Event()

    def __len__(self) -> int:
        return len(self._pending)

    def offer(self, key: K, item: T) -> T | None:
        """Queue ``item`` for ``key`` unless the waiting one ranks at least as high;
        returns the item that lost (the waiting one, or ``item``), if any."""
        waiting = self._pending.get(key)
        if waiting is not None and self._rank(waiting) >= self._rank(item):
            return item
        self._pending[key] = item
        self._arrived.set()
        return waiting

    def waiting(self, key: K) -> T | None:
        """The item waiting for ``key``, if any."""
        return self._pending.get(key)

    async def take(self) -> tuple[K, T]:
        """The oldest waiting key's item, as soon as the rate allows."""
        while True:
            if not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            delay = self._bucket.delay()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            self._bucket.take()
            key = next(iter(self._pending))
            return key, self._pending.pop(key)
