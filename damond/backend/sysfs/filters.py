"""A scheme's DAMOS filters as the running kernel takes them.

Since Linux 6.15 each layer has its directory: ``core_filters/`` (``addr``,
``target``) and ``ops_filters/`` (the rest). Per layer, the first filter whose
condition holds for a page decides (``allow``); a page none decides is rejected if
the layer's last filter allows (for the core layer: and no ops filter follows), else
allowed; a page the core layer allows skips the ops layer. Before 6.15 one
``filters/`` directory takes both layers (each keeps its order) and an undecided page
is always allowed, so damond writes a layer's last allow filter there as the reject
filter of the opposite condition: the same pages pass. ``allow`` itself is a file
only since 6.14; before, every filter rejects.

damond's own filters come first in the core layer: reject filters on the other
nodes' ranges, which keep a scheme to its context's nodes whatever follows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from damond.backend.sysfs import paths
from damond.backend.sysfs.features import Features
from damond.model import damon as model

Entry = tuple[str, str]

LAYERED_SINCE = "6.15"
"""``core_filters/`` and ``ops_filters/``, the filter types of the same release, and
the ``hugepage_size`` filter's ``min`` / ``max``."""
ALLOW_SINCE = "6.14"

TYPE_SINCE: dict[model.FilterType, str] = {
    model.FilterType.HUGEPAGE_SIZE: LAYERED_SINCE,
    model.FilterType.UNMAPPED: LAYERED_SINCE,
    model.FilterType.ACTIVE: LAYERED_SINCE,
}
"""Filter types younger than ``migrate_hot`` (6.11), which damond needs anyway."""


def _rejecting(ranges: Sequence[model.AddressRange]) -> list[model.Filter]:
    return [
        model.Filter(model.FilterType.ADDR, allow=False, addr_start=r.start, addr_end=r.end)
        for r in ranges
    ]


def _as_reject(f: model.Filter) -> model.Filter:
    """The reject filter letting through what ``f``, last of its layer, lets through
    where undecided pages are rejected."""
    return replace(f, matching=not f.matching, allow=False)


def unlayered(user: Sequence[model.Filter]) -> list[model.Filter]:
    """``user`` for a kernel before 6.15 (one ``filters/``, undecided pages allowed)."""
    out = list(user)
    ops = [i for i, f in enumerate(out) if not f.type.is_core]
    core = [i for i, f in enumerate(out) if f.type.is_core]
    last_ops = ops[-1] if ops else None
    # a core layer's last allow filter rejects undecided pages only without ops filters
    last_core = core[-1] if core and not ops else None
    for i in (last_ops, last_core):
        if i is not None and out[i].allow:
            out[i] = _as_reject(out[i])
    return out


def by_dir(
    user: Sequence[model.Filter], rejects: Sequence[model.AddressRange], f: Features
) -> dict[paths.FilterDir, list[model.Filter]]:
    """The filters of each directory the kernel has: damond's node rejects, then
    ``user`` in order."""
    own = _rejecting(rejects)
    if f.core_filters:
        return {
            "core_filters": own + [x for x in user if x.type.is_core],
            "ops_filters": [x for x in user if not x.type.is_core],
        }
    return {"filters": own + unlayered(user)}


def _own_fields(x: model.Filter) -> list[tuple[paths.FilterFile, str]]:
    if x.type is model.FilterType.MEMCG:
        return [("memcg_path", x.memcg_path)]
    if x.type is model.FilterType.ADDR:
        return [("addr_start", str(x.addr_start)), ("addr_end", str(x.addr_end))]
    if x.type is model.FilterType.HUGEPAGE_SIZE:
        return [("min", str(x.min)), ("max", str(x.max))]
    return []


def entries(
    s: int, user: Sequence[model.Filter], rejects: Sequence[model.AddressRange], f: Features
) -> list[Entry]:
    """Every filter file of scheme ``s``: each directory's count, then its filters."""
    out: list[Entry] = []
    for where, filters in by_dir(user, rejects, f).items():
        out.append((paths.nr_filters(s, where), str(len(filters))))
        for i, x in enumerate(filters):
            files: list[tuple[paths.FilterFile, str]] = [
                ("type", x.type.value),
                ("matching", "Y" if x.matching else "N"),
            ]
            if f.filter_allow:
                files.append(("allow", "Y" if x.allow else "N"))
            files += _own_fields(x)
            out += [(paths.filter_file(s, where, i, name), value) for name, value in files]
    return out


def problems(user: Sequence[model.Filter], f: Features, where: str, kernel: str) -> list[str]:
    """Why this kernel cannot take ``user`` as configured, one line per filter field;
    ``where`` names the scheme (``contexts[0].scheme``)."""
    out: list[str] = []
    written = user if f.core_filters else unlayered(user)
    for j, (x, w) in enumerate(zip(user, written, strict=True)):
        at = f"{where}.filters[{j}]"
        since = TYPE_SINCE.get(x.type)
        if since is not None and not f.core_filters:
            out.append(f"{at}.type: {x.type.value!r} needs Linux {since}+ (kernel {kernel})")
        if w.allow and not f.filter_allow:
            out.append(
                f"{at}.allow: this allow filter needs Linux {ALLOW_SINCE}+ (kernel {kernel}); "
                "before, only the last filter of a layer may allow (written as the reject "
                "filter of the opposite condition), in the core layer (addr) only when no "
                "ops filter follows"
            )
    return out
