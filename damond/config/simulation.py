"""The schema of ``[simulation]``: the simulated machine's nodes, memory, shifts and faults."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from damond.config.fields import NonNegativeInt, PositiveFloat, PositiveInt, _Strict
from damond.model.units import GiB, MiB


class SimNodeConfig(_Strict):
    id: NonNegativeInt
    capacity_bytes: PositiveInt


class MemorySetConfig(_Strict):
    """A set of memory chunks with one access rate (probability per sample)."""

    name: str
    bytes: PositiveInt
    access_rate: Annotated[float, Field(ge=0, le=1)]
    placement: Literal["interleave"] | NonNegativeInt = "interleave"


class ShiftConfig(_Strict):
    """At ``at_s``, ``fraction`` of set ``from_set`` swaps access rates with
    as many bytes of ``to_set``: the hot set moves."""

    at_s: Annotated[float, Field(ge=0)]
    from_set: str
    to_set: str
    fraction: Annotated[float, Field(gt=0, le=1)]


class FaultConfig(_Strict):
    """An injected failure of a context's backend calls, for testing supervision.

    ``raise`` makes ``count`` snapshots of the context fail from ``at_s`` on;
    ``hang`` makes its snapshots block from ``at_s`` on, until cancelled.
    """

    context: str
    at_s: Annotated[float, Field(ge=0)] = 0.0
    kind: Literal["raise", "hang"] = "raise"
    count: PositiveInt = 1


class SimulationConfig(_Strict):
    seed: int = 1
    chunk_bytes: PositiveInt = 64 * MiB
    bandwidth_bytes_per_s: PositiveInt = 1 * GiB
    pingpong_window_s: PositiveFloat = 600.0
    nodes: tuple[SimNodeConfig, ...] = (
        SimNodeConfig(id=0, capacity_bytes=20 * GiB),
        SimNodeConfig(id=1, capacity_bytes=40 * GiB),
    )
    sets: tuple[MemorySetConfig, ...] = (
        MemorySetConfig(name="hot", bytes=28 * GiB, access_rate=0.9, placement="interleave"),
        MemorySetConfig(name="warm", bytes=1 * GiB, access_rate=0.05, placement=0),
        MemorySetConfig(name="idle", bytes=1 * GiB, access_rate=0.0, placement=0),
        MemorySetConfig(name="cold", bytes=8 * GiB, access_rate=0.01, placement=1),
    )
    shifts: tuple[ShiftConfig, ...] = (
        ShiftConfig(at_s=1800, from_set="hot", to_set="cold", fraction=0.25),
    )
    faults: tuple[FaultConfig, ...] = ()

    @property
    def node_ids(self) -> list[int]:
        return [n.id for n in self.nodes]
