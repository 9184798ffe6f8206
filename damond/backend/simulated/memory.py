"""The simulated machine's memory: chunks (its regions) and access patterns in its units."""

from __future__ import annotations

import math
from dataclasses import dataclass


class Chunk:
    """A fixed-size piece of memory: its true access rate, and DAMON's view of it
    (``nr`` accesses at the last aggregation, ``age`` in aggregations)."""

    __slots__ = ("age", "last_from", "last_move_t", "node", "nr", "rate", "set_name", "size")

    def __init__(self, node: int, size: int, rate: float, set_name: str) -> None:
        self.node = node
        self.size = size
        self.rate = rate
        self.set_name = set_name
        self.nr = 0
        self.age = 0
        self.last_from = -1
        self.last_move_t = -math.inf


@dataclass(frozen=True, slots=True)
class Pattern:
    """An access pattern in machine units (samples per step, steps); hashable, as it keys
    the machine's eligible-bytes cache."""

    nr_min: float
    nr_max: float
    age_min: int
    age_max: int

    def matches(self, chunk: Chunk) -> bool:
        return self.nr_min <= chunk.nr <= self.nr_max and self.age_min <= chunk.age <= self.age_max
