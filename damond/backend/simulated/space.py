"""The physical address space under the simulated DAMON: every node's frames in node-id
order, each frame empty or holding one chunk.

Monitoring reads it through prefix sums of the frames' visible access rates, so a
region's true hot fraction (the chance that one sample of a random page in it finds
an access) costs two lookups whatever the region's size. A chunk being migrated, or
just migrated and not yet settled, is not seen as accessed (:attr:`Chunk.hidden_until`).
"""

from __future__ import annotations

import heapq
import itertools

from damond.backend.simulated.memory import Chunk


class AddressSpace:
    """Frames of ``frame_bytes`` per node; ``bounds[node]`` is its ``[first, end)``."""

    def __init__(self, frames_by_node: dict[int, int], frame_bytes: int) -> None:
        self.frame_bytes = frame_bytes
        self.bounds: dict[int, tuple[int, int]] = {}
        start = 0
        for node in sorted(frames_by_node):
            self.bounds[node] = (start, start + frames_by_node[node])
            start += frames_by_node[node]
        self.frames: list[Chunk | None] = [None] * start
        self._rates = [0.0] * start
        self._prefix: list[float] = [0.0] * (start + 1)
        self._dirty = False
        self._free = {n: list(range(a, b)) for n, (a, b) in self.bounds.items()}
        self._hidden: list[tuple[float, int, Chunk]] = []
        """Chunks whose accesses are hidden, by the time they show again."""
        self._seq = itertools.count()

    def free_frames(self, node: int) -> int:
        return len(self._free[node])

    def place(self, c: Chunk, node: int) -> None:
        """Put ``c`` in ``node``'s lowest free frame (the caller checked there is one)."""
        c.slot = heapq.heappop(self._free[node])
        c.node = node
        self.frames[c.slot] = c
        self._rates[c.slot] = c.rate if c.hidden_until == -float("inf") else 0.0
        self._dirty = True

    def remove(self, c: Chunk) -> None:
        self.frames[c.slot] = None
        self._rates[c.slot] = 0.0
        heapq.heappush(self._free[c.node], c.slot)
        self._dirty = True

    def hide(self, c: Chunk, until: float) -> None:
        """Hide ``c``'s accesses until ``until`` (it is being migrated)."""
        c.hidden_until = until
        self._rates[c.slot] = 0.0
        heapq.heappush(self._hidden, (until, next(self._seq), c))
        self._dirty = True

    def rate_changed(self, c: Chunk) -> None:
        if c.hidden_until == -float("inf"):
            self._rates[c.slot] = c.rate
            self._dirty = True

    def settle(self, t: float) -> None:
        """Show the accesses of chunks that have settled by ``t``."""
        hidden = self._hidden
        while hidden and hidden[0][0] <= t:
            _, _, c = heapq.heappop(hidden)
            if c.hidden_until <= t:
                c.hidden_until = -float("inf")
                if self.frames[c.slot] is c:
                    self._rates[c.slot] = c.rate
                    self._dirty = True

    def rates(self) -> list[float]:
        """Every frame's visible access rate (read-only)."""
        return self._rates

    def prefix(self) -> list[float]:
        """Cumulative visible access rates: frames ``[a, b)`` sum to ``p[b] - p[a]``."""
        if self._dirty:
            self._prefix = [0.0, *itertools.accumulate(self._rates)]
            self._dirty = False
        return self._prefix
