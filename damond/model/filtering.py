"""Which pages a scheme's DAMOS filters let it act on, decided as the kernel does (6.15+).

Filters are evaluated per layer, the core one (``addr``, ``target``) first, then the
operations one (the rest). In a layer, the first filter whose condition holds for a
page (its type matches, or with ``matching`` False does not) decides by its ``allow``;
a page no filter of the layer decides is rejected if the layer's last filter allows,
else passed on, except that the core layer never rejects by default when operations
filters follow (mm/damon/core.c ``damos_set_filters_default_reject``). A page a core
filter allows skips the operations layer (``core_filters_allowed``). A ``memcg``
filter matches the pages charged to exactly its cgroup, not its descendants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from damond.model.damon import Filter, FilterType

ROOT_CGROUP = "/"


@dataclass(frozen=True, slots=True)
class Page:
    """What the filters look at in a page (a folio)."""

    memcg: str = ROOT_CGROUP
    anon: bool = True
    young: bool = False
    active: bool = False
    mapped: bool = True
    addr: int = 0
    folio_bytes: int = 4096


def _is_of_type(f: Filter, page: Page) -> bool:
    match f.type:
        case FilterType.ANON:
            return page.anon
        case FilterType.MEMCG:
            return page.memcg == f.memcg_path
        case FilterType.ADDR:
            return f.addr_start <= page.addr < f.addr_end
        case FilterType.TARGET:
            return True  # physical address space: the one target
        case FilterType.YOUNG:
            return page.young
        case FilterType.HUGEPAGE_SIZE:
            return f.min <= page.folio_bytes <= f.max
        case FilterType.UNMAPPED:
            return not page.mapped
        case FilterType.ACTIVE:
            return page.active


def allowed(filters: Sequence[Filter], page: Page) -> bool:
    """Whether a scheme with ``filters`` acts on ``page``."""
    core = [f for f in filters if f.type.is_core]
    ops = [f for f in filters if not f.type.is_core]
    core_default_reject = bool(core) and not ops and core[-1].allow
    ops_default_reject = bool(ops) and ops[-1].allow
    decided = next((f.allow for f in core if _is_of_type(f, page) == f.matching), None)
    if decided is not None:
        return decided
    if core_default_reject:
        return False
    decided = next((f.allow for f in ops if _is_of_type(f, page) == f.matching), None)
    return decided if decided is not None else not ops_default_reject


def _pages_of(filters: Sequence[Filter], memcg: str) -> list[Page]:
    """One page of ``memcg`` for every combination the filters tell apart."""
    addrs = sorted({0, *(f.addr_start for f in filters), *(f.addr_end for f in filters)})
    sizes = sorted({4096, *(f.min for f in filters), *(f.max + 1 for f in filters)})
    flags = [(a, y, act, m) for a in (0, 1) for y in (0, 1) for act in (0, 1) for m in (0, 1)]
    return [
        Page(memcg, bool(a), bool(y), bool(act), bool(m), addr, size)
        for a, y, act, m in flags
        for addr in addrs
        for size in sizes
    ]


def acts_on_cgroup(filters: Sequence[Filter], path: str) -> bool:
    """Whether some page of cgroup ``path`` passes ``filters``."""
    return any(allowed(filters, p) for p in _pages_of(filters, path))


def cgroups_acted_on(filters: Sequence[Filter]) -> frozenset[str] | None:
    """The only cgroups whose pages ``filters`` let through, None if any cgroup's may."""
    named = {f.memcg_path for f in filters if f.type is FilterType.MEMCG}
    other = "/" + "-" * (1 + max((len(p) for p in named), default=0))
    if acts_on_cgroup(filters, other):
        return None
    return frozenset(p for p in named if acts_on_cgroup(filters, p))
