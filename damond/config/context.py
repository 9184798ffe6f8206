"""The schema of one context: what it watches, its scheme, its goal and its controller."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from damond.config.actions import ActionName, target_nid_error
from damond.config.actions import direction as scheme_direction
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


FilterTypeName = Literal["anon", "memcg", "addr", "young", "hugepage_size", "unmapped", "active"]

_FILTER_OWN_FIELDS: dict[str, tuple[str, ...]] = {
    "memcg": ("memcg_path",),
    "addr": ("addr_start", "addr_end"),
    "hugepage_size": ("min", "max"),
}


class FilterConfig(_Strict):
    """One DAMOS filter. Filters are evaluated in order; the first whose condition holds
    for a page decides (``allow``); a page no filter decides is allowed unless the last
    filter allows (then only what some filter allowed passes)."""

    type: Annotated[FilterTypeName, AnyCase]
    """``anon`` (anonymous pages), ``memcg`` (pages of ``memcg_path``), ``addr`` (pages
    in ``[addr_start, addr_end)``), ``young`` (accessed since last checked),
    ``hugepage_size`` (folios of ``min``-``max`` bytes), ``unmapped``, ``active`` (on an
    active LRU list)."""
    matching: bool = True
    """True: the filter's condition is that the page is of the type; False: that it is
    not."""
    allow: bool = True
    """True: pages meeting the condition are acted on; False: they are left alone."""
    memcg_path: str | None = None
    """The ``memcg`` filter's cgroup, from the cgroup root (``/system.slice/db.service``)."""
    addr_start: NonNegativeInt | None = None
    """The ``addr`` filter's first physical address, bytes."""
    addr_end: NonNegativeInt | None = None
    """The ``addr`` filter's end (exclusive), bytes; above ``addr_start``."""
    min: NonNegativeInt | None = None
    """The ``hugepage_size`` filter's smallest folio size, bytes."""
    max: NonNegativeInt | None = None
    """The ``hugepage_size`` filter's largest folio size, bytes; at least ``min``."""

    @model_validator(mode="after")
    def _own_fields(self) -> FilterConfig:
        own = _FILTER_OWN_FIELDS.get(self.type, ())
        for name in ("memcg_path", "addr_start", "addr_end", "min", "max"):
            value = getattr(self, name)
            if name in own and value is None:
                raise PydanticCustomError(
                    "filter_field",
                    "{field}: required by a {type} filter",
                    {"field": name, "type": self.type},
                )
            if name not in own and value is not None:
                raise PydanticCustomError(
                    "filter_field",
                    "{field}: a {type} filter does not take it",
                    {"field": name, "type": self.type},
                )
        if self.memcg_path is not None:
            if not self.memcg_path:
                raise PydanticCustomError("filter_field", "memcg_path: must not be empty", {})
            cgroup_path(self.memcg_path)
        if (
            self.addr_start is not None
            and self.addr_end is not None
            and self.addr_end <= self.addr_start
        ):
            raise PydanticCustomError(
                "filter_field",
                "addr_end: must be above addr_start ({start}), got {end}",
                {"start": self.addr_start, "end": self.addr_end},
            )
        if self.min is not None and self.max is not None and self.max < self.min:
            raise PydanticCustomError(
                "filter_field",
                "max: must be at least min ({min}), got {max}",
                {"min": self.min, "max": self.max},
            )
        return self

    def to_model(self) -> model.Filter:
        return model.Filter(
            type=model.FilterType(self.type),
            matching=self.matching,
            allow=self.allow,
            memcg_path=self.memcg_path or "",
            addr_start=self.addr_start or 0,
            addr_end=self.addr_end or 0,
            min=self.min or 0,
            max=self.max or 0,
        )


class SchemeConfig(_Strict):
    action: Annotated[ActionName, AnyCase] = "migrate_hot"
    """The DAMOS action: ``migrate_hot`` moves the hottest pages first, ``migrate_cold``
    the coldest; ``lru_prio`` (``lru_deprio``) moves pages to the active (inactive) LRU
    list on their node, for an ``active_mem_bp`` or ``inactive_mem_bp`` goal."""
    target_nid: NonNegativeInt | None = None
    """The node the scheme moves pages to; not the context's own node. Required by the
    migrate actions, not taken by the lru ones."""
    access_pattern: AccessPatternConfig = AccessPatternConfig()
    """Which regions the scheme acts on."""
    quota: QuotaConfig = QuotaConfig()
    """How much the scheme may move."""
    filters: tuple[FilterConfig, ...] = ()
    """DAMOS filters, in order: which pages of the matching regions the scheme may act
    on (a ``memcg`` filter keeps it to one workload's pages)."""

    @model_validator(mode="after")
    def _target_of_action(self) -> SchemeConfig:
        error = target_nid_error(self.action, self.target_nid)
        if error is not None:
            raise error
        return self


GoalMetricName = Literal[
    "node_target_mem_bp",
    "node_eligible_mem_bp",
    "node_mem_used_bp",
    "node_mem_free_bp",
    "node_memcg_used_bp",
    "node_memcg_free_bp",
    "active_mem_bp",
    "inactive_mem_bp",
    "some_mem_psi_us",
]


class GoalConfig(_Strict):
    metric: Annotated[GoalMetricName, AnyCase] = "node_target_mem_bp"
    """``node_target_mem_bp``: hot bytes on ``nid`` per ``nid``'s capacity;
    ``node_eligible_mem_bp``: hot bytes on ``nid`` per hot bytes on every node;
    ``node_mem_used_bp`` / ``node_mem_free_bp``: used (free) memory of ``nid`` per its
    total; ``node_memcg_used_bp`` / ``node_memcg_free_bp``: the cgroup ``path``'s memory
    on ``nid`` per ``nid``'s total (or the rest); ``active_mem_bp`` / ``inactive_mem_bp``:
    active (inactive) LRU memory per all LRU memory; ``some_mem_psi_us``: memory stall
    ("some" pressure) per quota reset interval, in microseconds."""
    nid: NonNegativeInt = 0
    """The node whose metric the goal is on: the context's node or the scheme's
    ``target_nid``. Required for the ``node_*`` metrics, unused by the others."""
    path: str = ""
    """The cgroup of the ``node_memcg_*`` metrics, from the cgroup root
    (``/system.slice/db.service``); required by them, unused by the others."""
    target_bp: BasisPoints = 0
    """The metric's target, in basis points (0-10000); required for every metric but
    ``some_mem_psi_us``."""
    target_us: NonNegativeInt | None = None
    """The target of ``some_mem_psi_us``: microseconds of memory stall per quota reset
    interval; only for that metric."""

    @model_validator(mode="before")
    @classmethod
    def _fields_of_metric(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        raw = data.get("metric", "node_target_mem_bp")
        name = raw.lower() if isinstance(raw, str) else raw
        try:
            metric = model.GoalMetric(name)
        except ValueError:
            return data  # the field's own validator names the choices
        # a dumped goal carries every field; its unset ones (None, "", 0) are not "given"
        given = {k for k, v in data.items() if v is not None and v != ""}
        if metric is model.GoalMetric.SOME_MEM_PSI_US:
            if data.get("target_bp"):
                raise _goal_error("target_bp", "some_mem_psi_us takes target_us, not target_bp")
            if "target_us" not in given:
                raise _goal_error("target_us", "required by some_mem_psi_us")
        else:
            if "target_us" in given:
                raise _goal_error("target_us", f"only some_mem_psi_us takes it, not {name}")
            if "target_bp" not in given:
                raise _goal_error("target_bp", f"required by {name}")
        if metric.takes_nid and "nid" not in given:
            raise _goal_error("nid", f"required by {name}")
        if not metric.takes_nid and data.get("nid"):
            raise _goal_error("nid", f"{name} is not of one node; remove nid")
        if metric.takes_path and "path" not in given:
            raise _goal_error(
                "path", f"required by {name}: the cgroup, like /system.slice/db.service"
            )
        if not metric.takes_path and "path" in given:
            raise _goal_error(
                "path", f"only node_memcg_used_bp and node_memcg_free_bp take it, not {name}"
            )
        return data

    @field_validator("path")
    @classmethod
    def _valid_path(cls, value: str) -> str:
        return cgroup_path(value)

    @property
    def target(self) -> int:
        """The target in the metric's own unit (basis points, or microseconds)."""
        return self.target_us if self.target_us is not None else self.target_bp


def _goal_error(field: str, reason: str) -> PydanticCustomError:
    return PydanticCustomError(
        "goal_field", "{field}: {reason}", {"field": field, "reason": reason}
    )


def cgroup_path(value: str) -> str:
    """A cgroup path as the kernel's ``path`` and ``memcg_path`` files take it: absolute
    from the cgroup root, no ``.``/``..`` parts, no empty parts, no trailing slash."""
    if value == "":
        return value
    parts = value.split("/")
    if (
        not value.startswith("/")
        or (value != "/" and value.endswith("/"))
        or any(p in ("", ".", "..") for p in parts[1:] if value != "/")
        or any(c in value for c in "\n\0")
        or len(value) > 4096
    ):
        raise PydanticCustomError(
            "cgroup_path",
            "must be a cgroup path from the cgroup root, like /system.slice/db.service "
            "(no '.', '..', empty parts or trailing '/'), got {value}",
            {"value": repr(value)},
        )
    return value


class ControllerConfig(_Strict):
    deadband_bp: BasisPoints = 20
    """No action while the goal is within this many basis points of its target. Never
    narrower in force than one measurement step (:func:`step_floor_bp`)."""
    gain: Annotated[float, Field(gt=0, le=1)] = 0.5
    """The fraction of the gap closed per iteration once the gap is within one
    measurement step of the target (a larger gap is closed at once, but for that step)."""
    lag_s: float | None = None
    """Time until migrated memory looks hot at its destination: how long a moved
    batch counts as in flight. When unset, damond learns it: the longest of the last
    three times a batch moved after a quiet spell took to show at its destination,
    between ``age_min + 2`` and ``age_min + 3`` aggregations (the latter until one
    has been seen)."""
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
    _preset: str | None = PrivateAttr(default=None)

    @property
    def preset(self) -> str | None:
        """The preset entry this context was expanded from (``damond.config.presets``),
        None for a context written out."""
        return self._preset

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
        """How this context's scheme moves its goal metric, None if it cannot
        (:func:`damond.config.actions.direction`)."""
        scheme, goal = self.scheme, self.goal
        return scheme_direction(scheme.action, self.node, scheme.target_nid, goal.metric, goal.nid)


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
