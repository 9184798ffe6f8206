"""The schema of one context: what it watches, its scheme, its goal and its controller."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from damond.config.fields import (
    NAME_RE,
    AnyCase,
    BasisPoints,
    NonNegativeInt,
    PositiveInt,
    _Strict,
)
from damond.model import damon as model
from damond.model.units import BP_SCALE, MiB


class Mode(StrEnum):
    DAEMON = "daemon"
    KERNEL = "kernel"
    NATIVE = "native"


class KernelFeed(StrEnum):
    """What ``kernel`` mode feeds the kernel's tuner.

    ``corrected`` turns the metric around for schemes that lower it, so that a
    larger quota always raises the fed value (what the kernel's tuner assumes);
    ``literal`` feeds it unchanged, whichever way the scheme moves it: kept to reproduce
    the problem that causes for schemes that lower the metric.
    """

    CORRECTED = "corrected"
    LITERAL = "literal"


class IntervalsConfig(_Strict):
    sample_us: PositiveInt = 50_000
    """Sampling interval, microseconds."""
    aggr_us: PositiveInt = 1_000_000
    """Aggregation interval, microseconds; at least ``sample_us``."""
    update_us: PositiveInt = 60_000_000
    """Interval of updating the monitored regions (ops update), microseconds."""


class AccessPatternConfig(_Strict):
    """Kernel units: nr_accesses in samples per aggregation, age in aggregations."""

    nr_accesses_min: NonNegativeInt = 10
    """Least samples per aggregation that saw a region accessed."""
    nr_accesses_max: NonNegativeInt = 2**32 - 1
    """Most samples per aggregation that saw a region accessed."""
    age_min: NonNegativeInt = 3
    """Least aggregations a region kept its access level."""
    age_max: NonNegativeInt = 2**32 - 1
    """Most aggregations a region kept its access level."""


class WeightsConfig(_Strict):
    sz_permil: NonNegativeInt = 0
    """Weight of region size in choosing regions within the quota."""
    nr_accesses_permil: NonNegativeInt = 500
    """Weight of access frequency in choosing regions within the quota."""
    age_permil: NonNegativeInt = 500
    """Weight of age in choosing regions within the quota."""


class QuotaConfig(_Strict):
    max_bytes: PositiveInt = 512 * MiB
    """The most the scheme may move per reset interval, whatever sets the quota; at most
    the node's capacity."""
    reset_interval_ms: PositiveInt = 1_000
    """The quota's window, milliseconds."""
    weights: WeightsConfig = WeightsConfig()
    """How DAMON prioritizes regions when the quota cannot take them all."""


class SchemeConfig(_Strict):
    action: Annotated[Literal["migrate_hot", "migrate_cold"], AnyCase] = "migrate_hot"
    """The DAMOS action: ``migrate_hot`` moves the hottest pages first, ``migrate_cold``
    the coldest."""
    target_nid: NonNegativeInt
    """The node the scheme moves pages to; not the context's own node."""
    access_pattern: AccessPatternConfig = AccessPatternConfig()
    """Which regions the scheme acts on."""
    quota: QuotaConfig = QuotaConfig()
    """How much the scheme may move."""


class GoalConfig(_Strict):
    metric: Annotated[Literal["node_target_mem_bp", "node_eligible_mem_bp"], AnyCase] = (
        "node_target_mem_bp"
    )
    """``node_target_mem_bp``: hot bytes on ``nid`` per ``nid``'s capacity;
    ``node_eligible_mem_bp``: hot bytes on ``nid`` per hot bytes on every node."""
    nid: NonNegativeInt
    """The node whose metric the goal is on: the context's node or the scheme's
    ``target_nid``."""
    target_bp: BasisPoints
    """The metric's target, in basis points (0-10000)."""


class ControllerConfig(_Strict):
    deadband_bp: BasisPoints = 20
    """No action while the goal is within this many basis points of its target. Never
    narrower in force than one measurement step (:func:`step_floor_bp`)."""
    gain: Annotated[float, Field(gt=0, le=1)] = 0.5
    """The fraction of the gap closed per iteration once the gap is within one
    measurement step of the target (a larger gap is closed at once, but for that step)."""
    lag_s: float | None = None
    """Time until migrated memory looks hot at its destination; derived from the
    access pattern and intervals when unset."""
    tuner: Annotated[model.GoalTuner, AnyCase] = model.GoalTuner.CONSIST
    """The kernel's quota-goal tuner in ``kernel`` mode: ``consist`` or ``temporal``."""
    kernel_feed: Annotated[KernelFeed, AnyCase] = KernelFeed.CORRECTED
    """What ``kernel`` mode feeds the kernel's tuner: ``corrected`` turns the metric
    around for schemes that lower it; ``literal`` feeds it unchanged."""


class ContextConfig(_Strict):
    name: str
    """1-63 letters, digits, ``_``, ``.`` or ``-``; names the kdamond's context, the
    metrics' ``context`` label and the context in policies."""
    node: NonNegativeInt
    """The NUMA node whose memory the context watches and its scheme moves from."""
    mode: Annotated[Mode, AnyCase] = Mode.DAEMON
    """Who sets the scheme's quota: ``daemon`` (damond's controller), ``kernel`` (the
    kernel's tuner, fed damond's metric) or ``native`` (the kernel measures, 7.2+)."""
    enabled: bool = True
    """A disabled context runs no kdamond; a policy can turn it on."""
    intervals: IntervalsConfig = IntervalsConfig()
    """DAMON's monitoring intervals."""
    scheme: SchemeConfig
    """The DAMOS scheme that moves pages."""
    goal: GoalConfig
    """The share of hot memory the context steers to."""
    controller: ControllerConfig = ControllerConfig()
    """How damond's controller moves towards the goal."""

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise PydanticCustomError(
                "context_name",
                "must be 1-63 letters, digits, '_', '.' or '-', starting with a letter or "
                "digit, got {value}",
                {"value": repr(value)},
            )
        return value

    @property
    def direction(self) -> model.Direction | None:
        """How this context's scheme moves its goal metric, None if it cannot."""
        if self.goal.nid == self.scheme.target_nid:
            return model.Direction.RAISES
        if self.goal.nid == self.node:
            return model.Direction.LOWERS
        return None


def seed_contexts() -> tuple[ContextConfig, ...]:
    """The default two-context scenario (the README's quick start)."""
    return (
        ContextConfig(
            name="node0",
            node=0,
            scheme=SchemeConfig(target_nid=1),
            goal=GoalConfig(metric="node_target_mem_bp", nid=0, target_bp=6000),
        ),
        ContextConfig(
            name="node1",
            node=1,
            scheme=SchemeConfig(target_nid=0),
            goal=GoalConfig(metric="node_target_mem_bp", nid=1, target_bp=4000),
        ),
    )


def step_floor_bp(step_bytes: int, bytes_per_bp: float) -> int:
    """The narrowest dead band a measurement resolves: one step of ``step_bytes`` (a
    region, the least memory a measurement tells apart) moves a metric of
    ``bytes_per_bp`` by this many basis points. A narrower band may hold no value that
    whole regions reach, and a promoter and a demoter on it would trade regions forever."""
    if step_bytes <= 0 or bytes_per_bp <= 0:
        return 0
    return min(BP_SCALE, math.ceil(step_bytes / bytes_per_bp))
