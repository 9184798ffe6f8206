"""Presets: a ``[[contexts]]`` entry with ``preset = "mtier"`` stands for the contexts of
a known recipe, expanded when the configuration is read.

``mtier`` is the kernel's memory-tiering sample (``samples/damon/mtier.c``): on a pair of
nodes, the fast one first, a promotion context moves hot pages of the slow node to the
fast one until the fast node is ``mem_used_bp`` used (``node_mem_used_bp``, 9970), and a
demotion context moves cold pages the other way until it is ``mem_free_bp`` free
(``node_mem_free_bp``, 50): together they keep the fast node near 99.6 % used. Both take
the sample's intervals (5 ms sampling, 100 ms aggregation), access patterns (any access
for promotion, none for demotion), quota (200 MiB per second, weighted by access
frequency and age, not size) and ``young`` page filter (promote young pages, demote only
pages not young). The sample's apply interval (1 s) and interval auto-tuning are not
taken: damond applies at each aggregation interval with the intervals as given.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal

from pydantic import ValidationError, ValidatorFunctionWrapHandler, field_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from damond.config.context import (
    AccessPatternConfig,
    ContextConfig,
    FilterConfig,
    GoalConfig,
    IntervalsConfig,
    Mode,
    QuotaConfig,
    SchemeConfig,
    WeightsConfig,
)
from damond.config.fields import NAME_RE, AnyCase, BasisPoints, NonNegativeInt, PositiveInt, _Strict
from damond.model.units import MiB

U32_MAX = 2**32 - 1
SUFFIXES = ("-promote", "-demote")
"""What the two contexts of an ``mtier`` preset are named: its ``name`` and these."""


class MtierPresetConfig(_Strict):
    """A ``[[contexts]]`` entry with ``preset = "mtier"``: the kernel's memory-tiering
    sample on ``nodes`` (fast, slow), expanded into the contexts ``<name>-promote`` and
    ``<name>-demote``; ``damond check`` prints them."""

    name: str
    """1-55 letters, digits, ``_``, ``.`` or ``-``: the two contexts are named
    ``<name>-promote`` and ``<name>-demote``."""
    preset: Annotated[Literal["mtier"], AnyCase]
    """The recipe: ``mtier``, the kernel's samples/damon/mtier.c."""
    nodes: tuple[NonNegativeInt, NonNegativeInt]
    """The fast node (DRAM, whose use the goals keep) and the slow one (CXL, PMEM)."""
    mode: Annotated[Mode, AnyCase] = Mode.DAEMON
    """Who sets both contexts' quotas (as a context's ``mode``)."""
    enabled: bool = True
    """Whether both contexts run."""
    mem_used_bp: BasisPoints = 9970
    """Promotion's goal: the fast node's used memory (``node_mem_used_bp``), basis points."""
    mem_free_bp: BasisPoints = 50
    """Demotion's goal: the fast node's free memory (``node_mem_free_bp``), basis points."""
    max_bytes: PositiveInt = 200 * MiB
    """Each context's quota cap per second (the sample's 200 MiB)."""

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not NAME_RE.match(value) or len(value) > 63 - len(SUFFIXES[0]):
            raise PydanticCustomError(
                "preset_name",
                "must be 1-55 letters, digits, '_', '.' or '-', starting with a letter or "
                "digit (the contexts are named <name>-promote and <name>-demote), got {value}",
                {"value": repr(value)},
            )
        return value

    @field_validator("nodes", mode="before")
    @classmethod
    def _a_pair(cls, value: object) -> object:
        if isinstance(value, list | tuple) and len(value) != 2:
            raise PydanticCustomError(
                "preset_nodes",
                "must be two nodes, the fast one first, like [0, 1], got {value}",
                {"value": list(value)},
            )
        return value

    @field_validator("nodes")
    @classmethod
    def _two_nodes(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] == value[1]:
            raise PydanticCustomError(
                "preset_nodes",
                "must be two different nodes, the fast one first, like [0, 1], got {value}",
                {"value": list(value)},
            )
        return value

    def expand(self) -> tuple[ContextConfig, ContextConfig]:
        """The promotion and the demotion context, each recording this entry."""
        fast, slow = self.nodes
        contexts = (
            self._context(True, slow, fast, "node_mem_used_bp", self.mem_used_bp),
            self._context(False, fast, slow, "node_mem_free_bp", self.mem_free_bp),
        )
        for ctx in contexts:
            ctx._preset = f"{self.name} ({self.preset} on nodes {fast}, {slow})"
        return contexts

    def _context(
        self, promote: bool, node: int, dest: int, metric: str, target_bp: int
    ) -> ContextConfig:
        return ContextConfig(
            name=self.name + SUFFIXES[0 if promote else 1],
            node=node,
            mode=self.mode,
            enabled=self.enabled,
            intervals=IntervalsConfig(sample_us=5_000, aggr_us=100_000, update_us=60_000_000),
            scheme=SchemeConfig(
                action="migrate_hot" if promote else "migrate_cold",
                target_nid=dest,
                access_pattern=AccessPatternConfig(
                    nr_accesses_min=1 if promote else 0,
                    nr_accesses_max=U32_MAX if promote else 0,
                    age_min=0,
                    age_max=U32_MAX,
                ),
                quota=QuotaConfig(
                    max_bytes=self.max_bytes,
                    reset_interval_ms=1_000,
                    weights=WeightsConfig(sz_permil=0, nr_accesses_permil=100, age_permil=100),
                ),
                filters=(FilterConfig(type="young", matching=True, allow=promote),),
            ),
            goal=GoalConfig(metric=metric, nid=self.nodes[0], target_bp=target_bp),
        )


def expand_contexts(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Validate ``contexts`` with each preset entry expanded: its first context takes the
    entry's place (so that every other entry keeps its index in error messages), the
    others follow the list. Errors of preset entries and of the rest come together."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        return handler(value)
    errors: list[InitErrorDetails] = []
    entries: list[Any] = []
    appended: list[ContextConfig] = []
    written = {e.get("name"): i for i, e in enumerate(value) if isinstance(e, dict)}
    taken: dict[str, int] = {}
    for i, entry in enumerate(value):
        if not (isinstance(entry, dict) and "preset" in entry):
            entries.append(entry)
            continue
        try:
            first, *rest = MtierPresetConfig.model_validate(entry).expand()
        except ValidationError as exc:
            errors += _relocated(exc, i)
            entries.append(entry)  # the handler's errors of it are dropped below
            continue
        for ctx in (first, *rest):
            clash = taken.get(ctx.name, written.get(ctx.name))
            if clash is not None and clash != i:
                errors.append(_name_clash(i, entry["name"], ctx.name, clash))
            taken[ctx.name] = i
        entries.append(first)
        appended += rest
    try:
        validated = handler(entries)
    except ValidationError as exc:
        failed = {e["loc"][0] for e in errors}
        errors += [e for e in _relocated(exc) if not e["loc"] or e["loc"][0] not in failed]
        validated = None
    if errors or validated is None:
        raise ValidationError.from_exception_data("contexts", errors)
    return tuple(validated) + tuple(appended)


def _name_clash(i: int, prefix: str, name: str, other: int) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError(
            "preset_name",
            "the preset names a context {name}, as contexts[{other}] is named",
            {"name": repr(name), "other": other},
        ),
        loc=(i, "name"),
        input=prefix,
    )


def _relocated(exc: ValidationError, *prefix: int) -> list[InitErrorDetails]:
    return [
        InitErrorDetails(
            type=PydanticCustomError(e["type"], e["msg"]),
            loc=(*prefix, *e["loc"]),
            input=e.get("input"),
        )
        for e in exc.errors()
    ]


def context_place(i: int, ctx: ContextConfig) -> str:
    """Where an error of the ``i``-th context points: ``contexts[i]``, naming the preset
    entry of a context expanded from one (its place in the file is that entry's)."""
    if ctx.preset is None:
        return f"contexts[{i}]"
    return f"contexts[{i}] ({ctx.name} of the preset {ctx.preset})"


def preset_lines(contexts: Iterable[ContextConfig]) -> list[str]:
    """What ``damond check`` says of the presets: each entry and the contexts it became."""
    groups: dict[str, list[ContextConfig]] = {}
    for ctx in contexts:
        if ctx.preset is not None:
            groups.setdefault(ctx.preset, []).append(ctx)
    if not groups:
        return []
    lines = ["presets:"]
    for origin, members in groups.items():
        lines.append(f"  {origin} expands into:")
        for ctx in members:
            goal = ctx.goal
            filters = ", ".join(
                f"{'allow' if f.allow else 'reject'} {'' if f.matching else 'not '}{f.type}"
                for f in ctx.scheme.filters
            )
            lines.append(
                f"    {ctx.name}: node {ctx.node} -> node {ctx.scheme.target_nid}, "
                f"{ctx.scheme.action} ({filters}), {ctx.mode.value} mode; goal "
                f"{goal.metric} of node {goal.nid} at {goal.target_bp} bp"
            )
    return lines
