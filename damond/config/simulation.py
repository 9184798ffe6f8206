"""The schema of ``[simulation]``: the simulated machine's nodes, memory, scheduled
changes (shifts, goal changes, set sizes) and faults."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Discriminator, Field, Tag

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
    """The unit of simulated memory: access rates and migrations are per chunk."""
    bandwidth_bytes_per_s: PositiveInt = 1 * GiB
    """The most the simulated machine migrates per second."""
    pingpong_window_s: PositiveFloat = 600.0
    """Memory moved back within this many seconds of a move counts as ping-pong."""
    nodes: tuple[SimNodeConfig, ...] = (
        SimNodeConfig(id=0, capacity_bytes=20 * GiB),
        SimNodeConfig(id=1, capacity_bytes=40 * GiB),
    )
    """The simulated machine's NUMA nodes (default: 20 GiB DRAM as node 0, 40 GiB CXL
    memory as node 1)."""
    sets: tuple[MemorySetConfig, ...] = (
        MemorySetConfig(name="hot", bytes=28 * GiB, access_rate=0.9, placement="interleave"),
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
