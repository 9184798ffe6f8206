"""What a run records as it goes: each context's series, the warnings it logged (at
simulated times) and the machine's state at every phase boundary."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import structlog

from damond.backend.simulated.machine import SimMachine

SERIES_POINTS_MAX = 5000
"""The most points a series keeps in the JSON file; longer runs are evenly thinned."""


@dataclass
class Series:
    """One point per iteration of a context."""

    t_s: list[float] = field(default_factory=list)
    value_bp: list[int] = field(default_factory=list)
    target_bp: list[int] = field(default_factory=list)
    quota_bytes: list[int] = field(default_factory=list)
    measured: list[bool] = field(default_factory=list)
    """Whether anything was eligible anywhere (else the value is undefined and reads 0)."""
    held: list[bool] = field(default_factory=list)

    def append(
        self, t_s: float, value_bp: int, target_bp: int, quota: int, measured: bool, held: bool
    ) -> None:
        self.t_s.append(t_s)
        self.value_bp.append(value_bp)
        self.target_bp.append(target_bp)
        self.quota_bytes.append(quota)
        self.measured.append(measured)
        self.held.append(held)

    def measured_points(self) -> list[tuple[float, int]]:
        """``(t_s, value_bp)`` of the iterations that measured something."""
        return [(t, v) for t, v, m in zip(self.t_s, self.value_bp, self.measured, strict=True) if m]

    def to_json(self, limit: int = SERIES_POINTS_MAX) -> dict[str, list[float] | list[int]]:
        """The series' contract: ``t_s``, ``value_bp``, ``target_bp``, ``quota_bytes``,
        one point per iteration or evenly thinned to ``limit`` points."""
        keep = thinned_indices(len(self.t_s), limit)
        return {
            "t_s": [round(self.t_s[i], 3) for i in keep],
            "value_bp": [self.value_bp[i] for i in keep],
            "target_bp": [self.target_bp[i] for i in keep],
            "quota_bytes": [self.quota_bytes[i] for i in keep],
        }


def thinned_indices(n: int, limit: int) -> list[int]:
    """At most ``limit`` indices of ``range(n)``, evenly spaced, first and last kept."""
    if n <= limit:
        return list(range(n))
    if limit < 2:
        return [n - 1] if limit == 1 else []
    return [round(k * (n - 1) / (limit - 1)) for k in range(limit)]


@dataclass(frozen=True)
class SimWarning:
    """A warning the daemon logged during the run, at a simulated time."""

    t_s: float
    contexts: tuple[str, ...]
    """The contexts it is about (none for a warning about the whole run)."""
    message: str

    def to_json(self) -> dict[str, object]:
        return {"t_s": round(self.t_s, 3), "contexts": list(self.contexts), "message": self.message}


@contextlib.contextmanager
def recording_warnings(now: Callable[[], float], sink: list[SimWarning]) -> Iterator[None]:
    """Record every warning or error logged while inside, with the simulated time, and
    stamp every log line of the run with ``sim_t_s`` (simulated seconds)."""
    processors = list(structlog.get_config()["processors"])

    def record(
        logger: object, method: str, event_dict: structlog.types.EventDict
    ) -> structlog.types.EventDict:
        t_s = now()
        event_dict["sim_t_s"] = round(t_s, 3)
        if method in ("warning", "warn", "error", "critical", "exception"):
            sink.append(SimWarning(t_s, _contexts(event_dict), _text(event_dict)))
        return event_dict

    structlog.configure(processors=[record, *processors])
    try:
        yield
    finally:
        structlog.configure(processors=processors)


def _contexts(event_dict: structlog.types.EventDict) -> tuple[str, ...]:
    """The contexts an event names: a context's own logger binds ``context``, an event
    about several lists them in ``contexts``."""
    named = event_dict.get("contexts")
    many = [str(c) for c in named] if isinstance(named, (list, tuple)) else []
    one = event_dict.get("context")
    return tuple(many + ([str(one)] if one is not None else []))


def _text(event_dict: structlog.types.EventDict) -> str:
    skip = ("event", "sim_t_s", "context", "contexts", "level", "timestamp")
    extra = {k: v for k, v in event_dict.items() if k not in skip}
    message = str(event_dict.get("event", ""))
    return f"{message} {extra}" if extra else message


@dataclass(frozen=True)
class PhaseMark:
    """The machine at a phase boundary (the start, a shift, a goal change, a set's new
    size, the end): what phase-by-phase figures (bytes moved, churn, an oracle's
    minimum) start from."""

    t_s: float
    label: str
    workload: bool
    """Whether the memory changed here (the start, a shift, a set's size), rather than
    only a goal: monitoring sees such a change only once it has aged."""
    migrated_bytes: int
    flows: dict[tuple[int, int, str], int]
    """Bytes migrated so far from node to node, per set of pages."""
    steady_eligible: dict[str, dict[int, int]]
    """Per context, the bytes per node its access pattern matches in steady state."""


def mark(machine: SimMachine, t_s: float, label: str, workload: bool) -> PhaseMark:
    return PhaseMark(
        t_s=t_s,
        label=label,
        workload=workload,
        migrated_bytes=machine.migrated_bytes,
        flows=dict(machine.flows),
        steady_eligible={name: machine.steady_eligible(s) for name, s in machine.schemes.items()},
    )
