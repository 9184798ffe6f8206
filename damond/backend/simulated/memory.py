"""The simulated machine's ground truth: chunks of memory with true access rates, and
access patterns in DAMON's units (samples per aggregation, aggregations)."""

from __future__ import annotations

import math
from dataclasses import dataclass


class Chunk:
    """A fixed-size piece of memory at ``slot`` (its frame) of ``node``: its true access
    rate, which set it belongs to, until when a migration hides its accesses, and which
    LRU list its pages are on (:mod:`.lru`)."""

    __slots__ = (
        "active",
        "hidden_until",
        "last_from",
        "last_move_t",
        "node",
        "rate",
        "set_name",
        "size",
        "slot",
    )

    def __init__(self, node: int, size: int, rate: float, set_name: str) -> None:
        self.node = node
        self.size = size
        self.rate = rate
        self.set_name = set_name
        self.slot = -1
        self.hidden_until = -math.inf
        self.last_from = -1
        self.last_move_t = -math.inf
        self.active = False


@dataclass(frozen=True, slots=True)
class Pattern:
    """A scheme's access pattern in its context's units: ``nr_accesses`` in samples per
    aggregation, age in aggregations."""

    nr_min: int
    nr_max: int
    age_min: int
    age_max: int

    def matches(self, nr: int, age: int) -> bool:
        return self.nr_min <= nr <= self.nr_max and self.age_min <= age <= self.age_max
