"""The kinds of rows of the metric family table, and how each kind becomes a metric family.

A row declares a family (name, type, help, labels) and where its values come
from; collecting it builds a prometheus-client :class:`Metric` with its samples,
which prometheus-client's encoders render (text or OpenMetrics). The table is in
:mod:`damond.metrics.families`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from prometheus_client.core import Metric
from prometheus_client.samples import Sample as PromSample

from damond.control.status import ContextStatus
from damond.metrics.goals import ShownGoal
from damond.metrics.state import ContextSeries, HostState, Value

Kind = Literal["gauge", "counter", "histogram"]
LabelValues = tuple[str | int, ...]
"""One sample's label values, in the order of its family's label names."""
Contexts = Sequence[tuple[ContextStatus, ContextSeries]]
Sample = tuple[LabelValues, Value]


@dataclass(frozen=True, slots=True, eq=False)
class ContextLabels:
    """A label set of per-context families: the names, and their values for a context."""

    names: tuple[str, ...]
    values: Callable[[ContextStatus, ShownGoal], LabelValues]


@dataclass(slots=True)
class Scrape:
    """One scrape's inputs: the host, and the contexts in order with their series and
    their goals in force."""

    host: HostState
    contexts: Contexts
    goals: Sequence[ShownGoal]
    _labels: dict[ContextLabels, list[dict[str, str]]] = field(default_factory=dict)

    def labels(self, labels: ContextLabels) -> list[dict[str, str]]:
        """Every context's labels of ``labels``, worked out once per scrape (do not mutate)."""
        found = self._labels.get(labels)
        if found is None:
            names = labels.names
            found = self._labels[labels] = [
                dict(zip(names, map(str, labels.values(status, goal)), strict=True))
                for (status, _), goal in zip(self.contexts, self.goals, strict=True)
            ]
        return found


class Family(Protocol):
    """A row of the table."""

    @property
    def name(self) -> str:
        """The family's name (a format string for a row of several families)."""

    def collect(self, scrape: Scrape) -> Iterator[Metric]:
        """The family (or, for a row of several families, the families) of this scrape."""


def _family(name: str, kind: Kind, help_text: str) -> tuple[Metric, str]:
    """An empty family and the name of its plain samples (a counter's end in ``_total``)."""
    if kind == "counter":
        base = name.removesuffix("_total")
        return Metric(base, help_text, kind), base + "_total"
    return Metric(name, help_text, kind), name


@dataclass(frozen=True, slots=True)
class HostFamily:
    """A family of host-level samples: ``samples`` gives their label values and values."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    samples: Callable[[HostState, Contexts], Iterable[Sample]]

    def collect(self, scrape: Scrape) -> Iterator[Metric]:
        metric, sample_name = _family(self.name, self.kind, self.help)
        names = self.labels
        metric.samples = [
            PromSample(sample_name, dict(zip(names, map(str, key), strict=True)), value)
            for key, value in self.samples(scrape.host, scrape.contexts)
        ]
        yield metric


@dataclass(frozen=True, slots=True)
class CounterFamilies:
    """One unlabelled counter family per name in ``values``, in name order.

    ``name`` and ``help`` are format strings that the counter's name fills in.
    """

    name: str
    help: str
    values: Callable[[HostState], Mapping[str, Value]]

    def collect(self, scrape: Scrape) -> Iterator[Metric]:
        counters = self.values(scrape.host)
        for key in sorted(counters):
            metric, sample_name = _family(self.name.format(key), "counter", self.help.format(key))
            metric.samples = [PromSample(sample_name, {}, counters[key])]
            yield metric


@dataclass(frozen=True, slots=True)
class ContextFamily:
    """One sample per context, or none where ``value`` gives None."""

    name: str
    kind: Kind
    help: str
    labels: ContextLabels
    value: Callable[[ContextStatus, ContextSeries], Value | None]

    def collect(self, scrape: Scrape) -> Iterator[Metric]:
        metric, sample_name = _family(self.name, self.kind, self.help)
        value = self.value
        metric.samples = [
            PromSample(sample_name, labels, v)
            for labels, (status, series) in zip(
                scrape.labels(self.labels), scrape.contexts, strict=True
            )
            if (v := value(status, series)) is not None
        ]
        yield metric


@dataclass(frozen=True, slots=True)
class GoalFamily:
    """One sample per context whose goal is in the family's unit (basis points or
    not), or none where ``value`` gives None."""

    name: str
    kind: Kind
    help: str
    labels: ContextLabels
    in_basis_points: bool
    value: Callable[[ContextStatus, ShownGoal], Value | None]

    def collect(self, scrape: Scrape) -> Iterator[Metric]:
        metric, sample_name = _family(self.name, self.kind, self.help)
        value = self.value
        metric.samples = [
            PromSample(sample_name, labels, v)
            for labels, (status, _), goal in zip(
                scrape.labels(self.labels), scrape.contexts, scrape.goals, strict=True
            )
            if goal.in_basis_points == self.in_basis_points
            and (v := value(status, goal)) is not None
        ]
        yield metric


@dataclass(frozen=True, slots=True)
class ContextNodeFamily:
    """One sample per context and NUMA node in ``values`` (labelled ``node``), by node."""

    name: str
    kind: Kind
    help: str
    labels: ContextLabels
    values: Callable[[ContextStatus, ContextSeries], Mapping[int, Value]]

    def collect(self, scrape: Scrape) -> Iterator[Metric]:
        metric, sample_name = _family(self.name, self.kind, self.help)
        samples = metric.samples
        contexts = zip(scrape.labels(self.labels), scrape.contexts, strict=True)
        for labels, (status, series) in contexts:
            for node, value in sorted(self.values(status, series).items()):
                samples.append(PromSample(sample_name, {**labels, "node": str(node)}, value))
        yield metric


@dataclass(frozen=True, slots=True)
class ContextHistogram:
    """A histogram per context: ``values`` gives its cumulative counts of ``buckets``
    and of ``+Inf``, then its sum and its count."""

    name: str
    help: str
    labels: ContextLabels
    buckets: tuple[float, ...]
    values: Callable[[ContextStatus, ContextSeries], Sequence[Value]]

    def collect(self, scrape: Scrape) -> Iterator[Metric]:
        metric = Metric(self.name, self.help, "histogram")
        bucket, total, count = self.name + "_bucket", self.name + "_sum", self.name + "_count"
        bounds = [*(repr(float(b)) for b in self.buckets), "+Inf"]
        n = len(bounds)
        samples = metric.samples
        contexts = zip(scrape.labels(self.labels), scrape.contexts, strict=True)
        for labels, (status, series) in contexts:
            values = self.values(status, series)
            samples.extend(
                PromSample(bucket, {**labels, "le": le}, v)
                for le, v in zip(bounds, values[:n], strict=True)
            )
            samples.append(PromSample(total, labels, values[n]))
            samples.append(PromSample(count, labels, values[n + 1]))
        yield metric
