"""Which simulated pages a scheme's DAMOS filters let it migrate.

A chunk's pages are charged to its set's ``cgroup`` and are anonymous or not as its
set's ``anon`` says; a chunk that is accessed at all (an access rate above 0) is
``young``, and one accessed at least :data:`ACTIVE_RATE` of samples is on the
``active`` LRU list; its address is its frame's; its pages are base pages, mapped.
The decision itself is the kernel's (:func:`damond.model.filtering.allowed`).
"""

from __future__ import annotations

from collections.abc import Sequence

from damond.backend.simulated.memory import Chunk
from damond.config import SimulationConfig
from damond.model import damon as model
from damond.model.filtering import Page, allowed

ACTIVE_RATE = 0.05
"""The least access rate that keeps a chunk's pages on the active LRU list."""

PAGE_BYTES = 4096


class PageSelector:
    """A scheme's filters over the machine's chunks, remembered per kind of chunk."""

    def __init__(
        self, filters: Sequence[model.Filter], cfg: SimulationConfig, frame_bytes: int
    ) -> None:
        self.filters = tuple(filters)
        self._sets = {s.name: (s.cgroup, s.anon) for s in cfg.sets}
        self._frame_bytes = frame_bytes
        self._by_addr = any(f.type is model.FilterType.ADDR for f in self.filters)
        self._known: dict[tuple[str, bool, bool, int], bool] = {}

    def allows(self, c: Chunk) -> bool:
        """Whether the scheme may migrate ``c``'s pages."""
        if not self.filters:
            return True
        addr = c.slot * self._frame_bytes if self._by_addr else 0
        key = (c.set_name, c.rate > 0, c.rate >= ACTIVE_RATE, addr)
        known = self._known.get(key)
        if known is None:
            cgroup, anon = self._sets.get(c.set_name, ("/", True))
            page = Page(cgroup, anon, key[1], key[2], True, addr, PAGE_BYTES)
            known = self._known[key] = allowed(self.filters, page)
        return known
