"""The kinds of rows of the metric family table, and how each kind renders.

A row declares a family (name, type, help, labels) and where its values come
from; rendering it gathers the label values and values of its samples and
hands them to the :class:`~damond.metrics.exposition.TextRenderer`, whose
cached template makes that the whole cost. The table is in
:mod:`damond.metrics.families`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Protocol

from damond.control.status import ContextStatus
from damond.metrics.exposition import Kind, LabelValues, TextRenderer, Value
from damond.metrics.state import ContextSeries, HostState

Contexts = Sequence[tuple[ContextStatus, ContextSeries]]
Sample = tuple[LabelValues, Value]


@dataclass(frozen=True, slots=True, eq=False)
class ContextLabels:
    """A label set of per-context families: the names, and their values for a context."""

    names: tuple[str, ...]
    values: Callable[[ContextStatus], LabelValues]


@dataclass(slots=True)
class Scrape:
    """One scrape's inputs: the host, and the contexts in order with their series."""

    host: HostState
    contexts: Contexts
    _keys: dict[ContextLabels, list[LabelValues]] = field(default_factory=dict)

    def keys(self, labels: ContextLabels) -> list[LabelValues]:
        """Every context's values of ``labels``, worked out once per scrape."""
        keys = self._keys.get(labels)
        if keys is None:
            keys = self._keys[labels] = [labels.values(status) for status, _ in self.contexts]
        return keys


class Family(Protocol):
    """A row of the table."""

    def render(self, out: list[str], renderer: TextRenderer, scrape: Scrape) -> None:
        """Append the family's text (or, for a row of several families, theirs) to ``out``."""


@dataclass(frozen=True, slots=True)
class HostFamily:
    """A family of host-level samples: ``samples`` gives their label values and values."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    samples: Callable[[HostState, Contexts], Iterable[Sample]]

    def render(self, out: list[str], renderer: TextRenderer, scrape: Scrape) -> None:
        samples = list(self.samples(scrape.host, scrape.contexts))
        keys = [key for key, _ in samples]
        values = [value for _, value in samples]
        renderer.family(out, self.name, self.kind, self.help, self.labels, keys, values)


@dataclass(frozen=True, slots=True)
class CounterFamilies:
    """One unlabelled counter family per name in ``values``, in name order.

    ``name`` and ``help`` are format strings that the counter's name fills in.
    """

    name: str
    help: str
    values: Callable[[HostState], Mapping[str, Value]]

    def render(self, out: list[str], renderer: TextRenderer, scrape: Scrape) -> None:
        counters = self.values(scrape.host)
        for key in sorted(counters):
            name = self.name.format(key)
            renderer.family(out, name, "counter", self.help.format(key), (), [()], [counters[key]])


@dataclass(frozen=True, slots=True)
class ContextFamily:
    """One sample per context, or none where ``value`` gives None."""

    name: str
    kind: Kind
    help: str
    labels: ContextLabels
    value: Callable[[ContextStatus, ContextSeries], Value | None]

    def render(self, out: list[str], renderer: TextRenderer, scrape: Scrape) -> None:
        value = self.value
        keys = scrape.keys(self.labels)
        got = [value(status, series) for status, series in scrape.contexts]
        values = [v for v in got if v is not None]
        if len(values) < len(got):
            keys = [key for key, v in zip(keys, got, strict=True) if v is not None]
        renderer.family(out, self.name, self.kind, self.help, self.labels.names, keys, values)


@dataclass(frozen=True, slots=True)
class ContextNodeFamily:
    """One sample per context and NUMA node in ``values`` (labelled ``node``), by node."""

    name: str
    kind: Kind
    help: str
    labels: ContextLabels
    values: Callable[[ContextStatus, ContextSeries], Mapping[int, Value]]

    def render(self, out: list[str], renderer: TextRenderer, scrape: Scrape) -> None:
        keys: list[LabelValues] = []
        values: list[Value] = []
        contexts = zip(scrape.keys(self.labels), scrape.contexts, strict=True)
        for key, (status, series) in contexts:
            for node, value in sorted(self.values(status, series).items()):
                keys.append((*key, node))
                values.append(value)
        label_names = (*self.labels.names, "node")
        renderer.family(out, self.name, self.kind, self.help, label_names, keys, values)


@dataclass(frozen=True, slots=True)
class ContextHistogram:
    """A histogram per context: ``values`` gives its cumulative counts of ``buckets``
    and of ``+Inf``, then its sum and its count."""

    name: str
    help: str
    labels: ContextLabels
    buckets: tuple[float, ...]
    values: Callable[[ContextStatus, ContextSeries], Sequence[Value]]

    def render(self, out: list[str], renderer: TextRenderer, scrape: Scrape) -> None:
        values = self.values
        flat = list(
            chain.from_iterable(values(status, series) for status, series in scrape.contexts)
        )
        keys = scrape.keys(self.labels)
        renderer.family(
            out, self.name, "histogram", self.help, self.labels.names, keys, flat, self.buckets
        )
