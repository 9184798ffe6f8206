"""The simulated LRU lists: each chunk is on the active or the inactive list.

The kernel's LRU aging, simplified: once per :data:`SCAN_S`, a chunk found accessed
(with the chance of its access rate, as a sample finds it) is activated, and an active
chunk found unaccessed is deactivated with the chance :data:`DEACTIVATE_PER_SCAN`. The
kernel deactivates pages only as reclaim scans the active list, so without memory
pressure an active page stays active for long: a slow drift stands for that. A chunk
starts on the list its access rate would keep it on. ``lru_prio`` and ``lru_deprio``
put the pages they act on (within their quota) on the active or inactive list.

The aging draws from its own random stream, so it changes no other draw of the machine.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from damond.backend.simulated.filters import ACTIVE_RATE
from damond.backend.simulated.memory import Chunk

SCAN_S = 1.0
"""How often the LRU lists are aged, seconds."""
DEACTIVATE_PER_SCAN = 0.002
"""The chance that an active chunk found unaccessed is deactivated at a scan (about
eight minutes on the active list, on average, once its accesses stop)."""


def starts_active(c: Chunk) -> bool:
    """The list a new chunk starts on: the one its access rate would keep it on."""
    return c.rate >= ACTIVE_RATE


class LruAger:
    """Ages the machine's LRU lists as time passes."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"lru-{seed}")
        self._next_scan_s = SCAN_S

    def age_to(self, chunks: Sequence[Chunk], t: float) -> None:
        """Run the scans due until ``t``."""
        rand = self._rng.random
        while self._next_scan_s <= t + 1e-9:
            self._next_scan_s += SCAN_S
            for c in chunks:
                if rand() < c.rate:
                    c.active = True
                elif c.active and rand() < DEACTIVATE_PER_SCAN:
                    c.active = False


def set_lru(chunks: Sequence[Chunk | None], passes: Callable[[Chunk], bool], active: bool) -> int:
    """Put the chunks the scheme's filters allow on the active (or inactive) list, as
    ``lru_prio`` (``lru_deprio``) does; returns the bytes acted on."""
    applied = 0
    for c in chunks:
        if c is not None and passes(c):
            c.active = active
            applied += c.size
    return applied
