"""Prometheus text exposition format (0.0.4), rendered fast.

prometheus-client's ``generate_latest`` spends about 10 ms on the ~1700
samples of 64 contexts; a scrape must cost well under 1 ms. The layout of a
metric family (its sample names and labels) rarely changes, so each family's
text is kept as a ``%``-template and a scrape only formats the values into it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Value = int | float
LabelValues = tuple[str | int, ...]
"""One sample's label values, in the order of its family's label names."""
Kind = Literal["gauge", "counter", "histogram"]


def escape_label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


def format_labels(names: Sequence[str], values: Sequence[str | int]) -> str:
    """``{a="x",b="y"}`` with values escaped; no labels give an empty string."""
    if not names:
        return ""
    pairs = zip(names, values, strict=True)
    return "{" + ",".join(f'{k}="{escape_label_value(str(v))}"' for k, v in pairs) + "}"


def _sample_lines(
    name: str, label_names: tuple[str, ...], key: LabelValues, buckets: tuple[float, ...]
) -> list[str]:
    """The sample names (with labels) that one key stands for: one, or a histogram's."""
    if not buckets:
        return [name + format_labels(label_names, key)]
    le_names = (*label_names, "le")
    labels = format_labels(label_names, key)
    return [
        *(
            f"{name}_bucket{format_labels(le_names, (*key, le))}"
            for le in (*(repr(b) for b in buckets), "+Inf")
        ),
        f"{name}_sum{labels}",
        f"{name}_count{labels}",
    ]


class TextRenderer:
    """Renders metric families; keeps one template per family name."""

    def __init__(self) -> None:
        self._templates: dict[str, tuple[tuple[LabelValues, ...], str]] = {}

    def family(
        self,
        out: list[str],
        name: str,
        kind: Kind,
        help_text: str,
        label_names: tuple[str, ...],
        keys: Sequence[LabelValues],
        values: Sequence[Value],
        buckets: tuple[float, ...] = (),
    ) -> None:
        """Append family ``name`` to ``out``: sample ``i`` has the label values ``keys[i]``
        and the value ``values[i]``.

        A histogram (``buckets`` given) has per key its cumulative bucket counts
        (``le`` is added to the labels), then its sum and its count.
        Values are ints or floats (never bools), written as Python prints them:
        Prometheus reads ``inf`` and ``nan`` as well as ``+Inf`` and ``NaN``.
        """
        layout = tuple(keys)
        cached = self._templates.get(name)
        if cached is None or cached[0] != layout:
            header = f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"
            body = "".join(
                f"{line.replace('%', '%%')} %s\n"
                for key in layout
                for line in _sample_lines(name, label_names, key, buckets)
            )
            cached = (layout, header + body)
            self._templates[name] = cached
        out.append(cached[1] % tuple(values))
