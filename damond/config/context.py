"""The schema of one context: what it watches, its scheme, its goal and its controller."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from damond.config.fields import (
    NAME_RE,
    BasisPoints,
    NonNegativeInt,
    PositiveInt,
    _Strict,
)
from damond.model import damon as model
from damond.model.units import MiB


class Mode(StrEnum):
    DAEMON = "daemon"
    KERNEL = "kernel"
    NATIVE = "native"


class KernelFeed(StrEnum):
    """What ``kernel`` mode feeds the kernel's tuner.

    ``corrected`` turns the metric around for schemes that lower it, so that a
    larger quota always raises the fed value (what the kernel's tuner assumes);
    ``literal`` feeds it as the seed RFC would have, to reproduce its problem.
    """

    CORRECTED = "corrected"
    LITERAL = "literal"


class IntervalsConfig(_Strict):
    sample_us: PositiveInt = 50_000
    aggr_us: PositiveInt = 1_000_000
    update_us: PositiveInt = 60_000_000


class AccessPatternConfig(_Strict):
    """Kernel units: nr_accesses in samples per aggregation, age in aggregations."""

    nr_accesses_min: NonNegativeInt = 10
    nr_accesses_max: NonNegativeInt = 2**32 - 1
    age_min: NonNegativeInt = 3
    age_max: NonNegativeInt = 2**32 - 1


class WeightsConfig(_Strict):
    sz_permil: NonNegativeInt = 0
    nr_accesses_permil: NonNegativeInt = 500
    age_permil: NonNegativeInt = 500


class QuotaConfig(_Strict):
    max_bytes: PositiveInt = 512 * MiB
    """The most the scheme may move per reset interval, whatever sets the quota."""
    reset_interval_ms: PositiveInt = 1_000
    weights: WeightsConfig = WeightsConfig()


class SchemeConfig(_Strict):
    action: Literal["migrate_hot", "migrate_cold"] = "migrate_hot"
    target_nid: NonNegativeInt
    access_pattern: AccessPatternConfig = AccessPatternConfig()
    quota: QuotaConfig = QuotaConfig()


class GoalConfig(_Strict):
    metric: Literal["node_target_mem_bp", "node_eligible_mem_bp"] = "node_target_mem_bp"
    nid: NonNegativeInt
    target_bp: BasisPoints


class ControllerConfig(_Strict):
    deadband_bp: BasisPoints = 20
    gain: Annotated[float, Field(gt=0, le=1)] = 0.5
    lag_s: float | None = None
    """Time until migrated memory looks hot at its destination; derived from the
    access pattern and intervals when unset."""
    tuner: model.GoalTuner = model.GoalTuner.CONSIST
    kernel_feed: KernelFeed = KernelFeed.CORRECTED


class ContextConfig(_Strict):
    name: str
    node: NonNegativeInt
    mode: Mode = Mode.DAEMON
    enabled: bool = True
    intervals: IntervalsConfig = IntervalsConfig()
    scheme: SchemeConfig
    goal: GoalConfig
    controller: ControllerConfig = ControllerConfig()

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
    """The seed RFC's two-context scenario."""
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
