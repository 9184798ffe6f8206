"""The schema of ``[simulation]``: the simulated machine's nodes, memory, scheduled
changes (shifts, goal changes, set sizes) and faults."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator
from pydantic_core import PydanticCustomError

from damond.config.context import cgroup_path
from damond.config.fields import (
    BasisPoints,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    _Strict,
)
from damond.model.units import GiB, MiB


class SimNodeConfig(_Strict):
    id: NonNegativeInt
    """The node's id, as contexts and goals name it."""
    capacity_bytes: PositiveInt
    """The node's memory."""
    tier: NonNegativeInt | None = None
    """The node's memory tier, 0 the fastest (DRAM); unset: its rank by node id, so that
    node 0 is DRAM, node 1 the next tier and so on."""
    latency_ns: PositiveInt | None = None
    """The node's memory access latency, nanoseconds; an access to a node slower than
    the fastest stalls for the difference (``some_mem_psi_us``). Unset: 100 ns plus 150
    ns per tier below DRAM (DRAM 100 ns, CXL memory 250 ns)."""


class MemorySetConfig(_Strict):
    """A set of memory chunks with one access rate (probability per sample)."""

    name: str
    """The set's name, as shifts and events name it."""
    bytes: PositiveInt
    """The set's size."""
    access_rate: Annotated[float, Field(ge=0, le=1)]
    """Probability that a chunk of the set is accessed in one sample (0-1)."""
    placement: Literal["interleave"] | NonNegativeInt = "interleave"
    """Where the set starts: ``interleave`` over every node, or one node id."""
    cgroup: str = "/"
    """The cgroup the set's pages are charged to, from the cgroup root (``/`` the root
    cgroup): what ``memcg`` filters and the ``node_memcg_*`` metrics see."""
    anon: bool = True
    """Whether the set is anonymous memory (else file-backed): what ``anon`` filters see."""

    @field_validator("cgroup")
    @classmethod
    def _valid_cgroup(cls, value: str) -> str:
        if not value:
            raise PydanticCustomError("cgroup_path", "must not be empty; / is the root", {})
        return cgroup_path(value)


class ShiftConfig(_Strict):
    """At ``at_s``, ``fraction`` of set ``from_set`` swaps access rates with
    as many bytes of ``to_set``: the hot set moves."""

    at_s: Annotated[float, Field(ge=0)]
    """Simulated time of the shift, seconds."""
    from_set: str
    """The set that cools."""
    to_set: str
    """The set that heats up (takes ``from_set``'s access rate)."""
    fraction: Annotated[float, Field(gt=0, le=1)]
    """The share of ``from_set`` that swaps (0-1)."""


class GoalEventConfig(_Strict):
    """At ``at_s``, context ``context``'s goal target becomes ``target_bp``, as a policy
    pushed at that moment would set it."""

    at_s: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    """Simulated time of the change, seconds."""
    context: str
    """The context whose goal changes."""
    target_bp: BasisPoints
    """The goal's new target (0-10000)."""


class SetPhaseConfig(_Strict):
    """At ``at_s``, set ``set`` grows or shrinks to ``bytes`` (0: it is freed whole).

    New memory is placed as the set's ``placement`` says and starts unsampled;
    shrinking frees chunks of the set picked at random, wherever they are."""

    at_s: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    """Simulated time of the change, seconds."""
    set: str
    """The set that grows or shrinks."""
    bytes: NonNegativeInt
    """The set's new size (0: freed whole); growth stops when the machine is full."""


def _event_kind(value: object) -> str:
    """An entry with ``set`` is a set's new size; anything else is read as a goal change."""
    if isinstance(value, SetPhaseConfig) or (isinstance(value, dict) and "set" in value):
        return "set"
    return "goal"


ScheduledEvent = Annotated[
    Annotated[GoalEventConfig, Tag("goal")] | Annotated[SetPhaseConfig, Tag("set")],
    Discriminator(_event_kind),
]
"""One entry of ``events``: a goal change or a set's new size, told apart by its keys."""


class FaultConfig(_Strict):
    """An injected failure of a context's backend calls, for testing supervision.

    ``raise`` makes ``count`` snapshots of the context fail from ``at_s`` on;
    ``hang`` makes its snapshots block from ``at_s`` on, until cancelled.
    """

    context: str
    """The context whose backend calls fail."""
    at_s: Annotated[float, Field(ge=0)] = 0.0
    """Simulated time the fault starts, seconds."""
    kind: Literal["raise", "hang"] = "raise"
    """``raise``: the snapshots fail; ``hang``: they block until cancelled."""
    count: PositiveInt = 1
    """How many snapshots fail (``raise``)."""


class SimulationConfig(_Strict):
    description: str = ""
    """What the scenario shows, in a sentence or two (printed by ``damond simulate``)."""
    seed: int = 1
    """Seed of the simulated sampling noise (``damond simulate --seed``)."""
    chunk_bytes: PositiveInt = 64 * MiB
    """The unit of simulated memory, its pages: each chunk has one access rate, and
    DAMON regions start and end on chunk boundaries."""
    bandwidth_bytes_per_s: PositiveInt = 1 * GiB
    """The most the simulated machine migrates per second, over all contexts; a kdamond
    waits for its pages to move before it samples again. The default is of the order
    of unthrottled kernel promotion measured on DRAM + PMEM (726 MB/s, Huang Ying's
    NUMA-balancing hot-page selection series, pmbench, linux-mm 2022), rounded up."""
    migration_settle_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.05
    """How long a moved page's accesses stay unseen after its move, beyond the move itself
    (while it moves it is isolated from the LRU and unseen anyway): one default sampling
    interval, as the page's new mapping starts not accessed."""
    fail_charge_num: NonNegativeInt = 0
    """The simulated kernel's ``quotas/fail_charge_num`` (7.2): with
    ``fail_charge_denom``, the share of the bytes an action failed on (pages not
    migrated, such as to a full node, or free pages) that is charged to the quota."""
    fail_charge_denom: NonNegativeInt = 0
    """The simulated kernel's ``quotas/fail_charge_denom`` (7.2); 0 charges a region's
    whole size whether its pages moved or not (the kernel's default)."""
    nr_regions_min: PositiveInt = 1_000
    """The least DAMON regions per simulated context (``monitoring_attrs/nr_regions/min``,
    as ``sysfs.nr_regions_min`` sets it on a real kernel): no region grows beyond the
    monitored memory over this. The default keeps regions as fine as the simulated pages
    (one chunk each on machines of up to 1000 chunks), DAMON's view at its sharpest; 10
    (the kernel's usual minimum) makes it start from coarse regions that split and
    merge, and mix hot and cold pages after a shift."""
    nr_regions_max: PositiveInt = 1_000
    """The most DAMON regions per simulated context (``monitoring_attrs/nr_regions/max``,
    as ``sysfs.nr_regions_max`` sets it on a real kernel): regions are split while at
    most half this many exist, and merged harder beyond it."""
    min_region_bytes: PositiveInt | None = None
    """The smallest simulated DAMON region (the kernel's ``min_region_sz``), a multiple
    of ``chunk_bytes``; unset: one chunk, the finest the simulated pages allow."""
    measure_window_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    """Eligible bytes are read as damond reads a kernel's (``sysfs.measure_window_s``):
    the mean of the per-node ``stat`` schemes' views over this many seconds; 0 reads
    the last aggregation's view."""
    age_reset_share: Annotated[float, Field(ge=0, le=1)] | None = None
    """A region's age restarts when its ``nr_accesses`` moves by more than this share of
    the samples per aggregation; unset (the default): the kernel's threshold, a tenth of
    the largest count of the interval. At 20 samples that threshold (2) restarts the age
    of memory accessed in 90 % of samples every few intervals, so that only memory
    accessed in nearly every sample stays eligible, as on a kernel: real hot buffers,
    touched every sampling interval, read an access rate of 1.0. A share such as 0.4
    keeps less regular memory aged, unlike the kernel."""
    clock_jitter: Annotated[float, Field(ge=0, lt=1)] = 0.0
    """Each simulated context's aggregation intervals vary by up to this share, at random
    (a kdamond's sleeps are not exact), so that contexts drift out of step with each
    other and with the control loop. 0 keeps every context on its own clock (its own
    interval, from its own start, late by its own migrations) without drift, as the
    daemon's tests time their checks; 0.02 is a realistic drift."""
    pingpong_window_s: PositiveFloat = 600.0
    """Memory moved back within this many seconds of a move counts as ping-pong."""
    accesses_per_gib_s: PositiveFloat = 100_000.0
    """Memory accesses per second to a GiB of a set of access rate 1 (in proportion for
    lower rates): with the nodes' ``latency_ns``, the simulated memory stall."""
    nodes: tuple[SimNodeConfig, ...] = (
        SimNodeConfig(id=0, capacity_bytes=20 * GiB),
        SimNodeConfig(id=1, capacity_bytes=40 * GiB),
    )
    """The simulated machine's NUMA nodes (default: 20 GiB DRAM as node 0, 40 GiB CXL
    memory as node 1)."""
    sets: tuple[MemorySetConfig, ...] = (
        MemorySetConfig(name="hot", bytes=28 * GiB, access_rate=1.0, placement="interleave"),
        MemorySetConfig(name="warm", bytes=1 * GiB, access_rate=0.05, placement=0),
        MemorySetConfig(name="idle", bytes=1 * GiB, access_rate=0.0, placement=0),
        MemorySetConfig(name="cold", bytes=8 * GiB, access_rate=0.01, placement=1),
    )
    """The simulated memory: 28 GiB hot interleaved over both nodes, and warm, idle and
    cold sets."""
    shifts: tuple[ShiftConfig, ...] = (
        ShiftConfig(at_s=1800, from_set="hot", to_set="cold", fraction=0.25),
    )
    """Moves of the hot set at simulated times (default: a quarter at 30 minutes)."""
    events: tuple[ScheduledEvent, ...] = ()
    """Goal changes ``{ at_s, context, target_bp }``, taken as a pushed policy's target is
    (``damond simulate`` only), and set sizes ``{ at_s, set, bytes }``, at simulated
    times."""
    phases: tuple[SetPhaseConfig, ...] = ()
    """Set sizes at simulated times (the workload's phases); the same as set entries
    of ``events``."""
    faults: tuple[FaultConfig, ...] = ()
    """Injected failures of contexts' backend calls, for testing supervision."""

    @model_validator(mode="after")
    def _regions_fit(self) -> SimulationConfig:
        if self.nr_regions_min > self.nr_regions_max:
            raise PydanticCustomError(
                "nr_regions",
                "nr_regions_min: must not exceed nr_regions_max ({max}), got {min}",
                {"max": self.nr_regions_max, "min": self.nr_regions_min},
            )
        if self.min_region_bytes is not None and self.min_region_bytes % self.chunk_bytes:
            raise PydanticCustomError(
                "min_region_bytes",
                "min_region_bytes: must be a multiple of chunk_bytes ({chunk}), got {value}",
                {"chunk": self.chunk_bytes, "value": self.min_region_bytes},
            )
        return self

    @property
    def node_ids(self) -> list[int]:
        return [n.id for n in self.nodes]

    @property
    def goal_events(self) -> list[GoalEventConfig]:
        """The goal changes, in time order."""
        return sorted(
            (e for e in self.events if isinstance(e, GoalEventConfig)), key=lambda e: e.at_s
        )

    @property
    def set_phases(self) -> list[SetPhaseConfig]:
        """Every set size change (``phases`` and set entries of ``events``), in time order."""
        found = [e for e in self.events if isinstance(e, SetPhaseConfig)] + list(self.phases)
        return sorted(found, key=lambda e: e.at_s)


def scheduled_errors(sim: SimulationConfig, context_names: Sequence[str]) -> list[str]:
    """Events and phases that name a context or set the configuration does not have."""
    errors: list[str] = []
    sets = [s.name for s in sim.sets]
    for key, entries in (("events", sim.events), ("phases", sim.phases)):
        for i, entry in enumerate(entries):
            where = f"simulation.{key}[{i}]"
            if isinstance(entry, GoalEventConfig) and entry.context not in context_names:
                known = ", ".join(context_names) or "none"
                errors.append(
                    f"{where}.context: unknown context {entry.context!r} (contexts: {known})"
                )
            if isinstance(entry, SetPhaseConfig) and entry.set not in sets:
                errors.append(
                    f"{where}.set: unknown set {entry.set!r} (sets: {', '.join(sets) or 'none'})"
                )
    return errors
