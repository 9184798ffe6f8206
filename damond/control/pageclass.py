"""The class of pages a context moves: its access pattern in units every context shares.

An access pattern is counted in its own context's units (accesses per aggregation,
age in aggregations); as a class it is an access frequency (the share of samples
that saw an access) and an age in seconds, so that the patterns of contexts with
different intervals compare. Two contexts can move the same pages only if their
classes overlap: a hot-page promoter and a cold-page demoter never do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from damond.config import ContextConfig

AGE_UNLIMITED = 2**32 - 1
"""The kernel's largest ``age_max`` (and the config's default): any age."""


@dataclass(frozen=True, slots=True)
class PageClass:
    """Pages whose access frequency and age fall in these closed ranges."""

    freq_min: float
    freq_max: float
    age_min_s: float
    age_max_s: float

    @classmethod
    def of(cls, ctx: ContextConfig) -> PageClass:
        pattern = ctx.scheme.access_pattern
        samples = max(1, ctx.intervals.aggr_us // ctx.intervals.sample_us)
        aggr_s = ctx.intervals.aggr_us / 1e6
        return cls(
            freq_min=min(1.0, pattern.nr_accesses_min / samples),
            freq_max=min(1.0, pattern.nr_accesses_max / samples),
            age_min_s=pattern.age_min * aggr_s,
            # the largest age_max means "no limit", whatever the aggregation interval
            age_max_s=math.inf if pattern.age_max >= AGE_UNLIMITED else pattern.age_max * aggr_s,
        )

    def overlap(self, other: PageClass) -> PageClass | None:
        """The pages in both classes, None if there are none."""
        both = PageClass(
            max(self.freq_min, other.freq_min),
            min(self.freq_max, other.freq_max),
            max(self.age_min_s, other.age_min_s),
            min(self.age_max_s, other.age_max_s),
        )
        empty = both.freq_min > both.freq_max or both.age_min_s > both.age_max_s
        return None if empty else both

    def holds(self, freq: float, age_s: float) -> bool:
        return self.freq_min <= freq <= self.freq_max and self.age_min_s <= age_s <= self.age_max_s

    def describe(self) -> str:
        """``pages accessed in 50-100 % of samples, aged 3 s or more``."""
        freq = f"{self.freq_min:.0%}-{self.freq_max:.0%}"
        if math.isinf(self.age_max_s):
            age = f"aged {self.age_min_s:g} s or more"
        else:
            age = f"aged {self.age_min_s:g}-{self.age_max_s:g} s"
        return f"pages accessed in {freq} of samples, {age}"


ANY_PAGES = PageClass(0.0, 1.0, 0.0, float(2**32))
"""Every page, whatever its access frequency and age."""
