"""The goal metrics of a machine's memory state (node, cgroup, LRU, pressure), as pure
functions with the kernel's definitions, and which way a scheme moves each of them.

The node metrics are integer basis points of the node's total memory, floored as the
kernel's ``mult_frac`` is: ``node_mem_used_bp`` is (total - free) / total of ``nid``,
``node_mem_free_bp`` free / total (a node of no memory: 0 used, 10000 free);
``node_memcg_used_bp`` the cgroup's LRU bytes on ``nid`` / the node's total, and
``node_memcg_free_bp`` the rest. ``active_mem_bp`` (``inactive_mem_bp``) is the active
(inactive) LRU memory over all LRU memory. ``some_mem_psi_us`` is the growth of the
"some" memory stall total since the last evaluation; damond evaluates it once per
iteration and scales it to one quota reset interval, the kernel's evaluation period.

For the controller, a free metric is its used metric turned around (10000 minus it), so
that a promoter toward ``node_mem_used_bp`` and a demoter toward ``node_mem_free_bp`` of
one node steer one quantity, as in the kernel's ``mtier`` sample; ``inactive_mem_bp`` is
likewise ``active_mem_bp`` turned around, so ``lru_prio`` and ``lru_deprio`` contexts
steer one quantity too.
"""

from __future__ import annotations

from collections.abc import Mapping

from damond.config import ContextConfig
from damond.model import damon as model
from damond.model.filtering import acts_on_cgroup
from damond.model.measurement import MemoryReadings
from damond.model.units import BP_SCALE

M = model.GoalMetric
SHARE_METRICS = frozenset({M.NODE_TARGET_MEM_BP, M.NODE_ELIGIBLE_MEM_BP})
"""Shares of the scheme's eligible memory: measured by DAMON, not by the machine."""
NODE_MEMORY_METRICS = frozenset(
    {M.NODE_MEM_USED_BP, M.NODE_MEM_FREE_BP, M.NODE_MEMCG_USED_BP, M.NODE_MEMCG_FREE_BP}
)
"""A node's memory per its total: migration moves them as soon as it happens."""
LRU_METRICS = frozenset({M.ACTIVE_MEM_BP, M.INACTIVE_MEM_BP})
"""Moved only by ``lru_prio`` and ``lru_deprio``: migration keeps a page on its LRU list."""
COMPLEMENT_OF = {
    M.NODE_MEM_FREE_BP: M.NODE_MEM_USED_BP,
    M.NODE_MEMCG_FREE_BP: M.NODE_MEMCG_USED_BP,
    M.INACTIVE_MEM_BP: M.ACTIVE_MEM_BP,
}
"""Free (inactive) metrics and the used (active) metric each is the complement of."""


def _floor_bp(numerator: int, denominator: int) -> int:
    if denominator <= 0:
        return 0
    return max(0, min(BP_SCALE, numerator * BP_SCALE // denominator))


def node_amounts(metric: M, path: str, memory: MemoryReadings) -> dict[int, int]:
    """The bytes per node that a node metric's used side counts: used memory, or the
    cgroup's memory."""
    if metric in (M.NODE_MEMCG_USED_BP, M.NODE_MEMCG_FREE_BP):
        return dict(memory.memcg_node_bytes.get(path, {}))
    free = memory.node_free_bytes
    return {n: max(0, total - free.get(n, 0)) for n, total in memory.node_total_bytes.items()}


def memory_value(metric: M, nid: int, path: str, memory: MemoryReadings) -> int:
    """The value of a node, LRU or cgroup metric, in basis points."""
    if metric in LRU_METRICS:
        active, inactive = memory.active_bytes, memory.inactive_bytes
        part = active if metric is M.ACTIVE_MEM_BP else inactive
        return _floor_bp(part, active + inactive)
    if metric not in NODE_MEMORY_METRICS:
        raise ValueError(f"{metric} is not a metric of the machine's memory")
    total = memory.node_total_bytes.get(nid, 0)
    if total <= 0:
        return 0 if metric not in COMPLEMENT_OF else BP_SCALE
    used = node_amounts(metric, path, memory).get(nid, 0)
    return _floor_bp(total - used if metric in COMPLEMENT_OF else used, total)


def psi_per_interval(
    last: tuple[float, int] | None, now_s: float, total_us: int, reset_interval_s: float
) -> int | None:
    """Stall microseconds per reset interval since ``last`` = ``(time_s, total_us)``
    (None before a second reading, or when no time passed)."""
    if last is None or now_s <= last[0]:
        return None
    grown = max(0, total_us - last[1])
    return round(grown * reset_interval_s / (now_s - last[0]))


def raises_value(ctx: ContextConfig, tier_by_node: Mapping[int, int] | None = None) -> bool | None:
    """Whether ``ctx``'s scheme raises its goal's metric (False: lowers it), None if it
    cannot move it (:attr:`ContextConfig.direction`, with two refinements): stall falls
    with a move to a faster tier where the tiers are known, and a cgroup's metric moves
    only through the cgroup's pages, so not at all if the scheme's filters exclude them."""
    metric = M(ctx.goal.metric)
    tiers = tier_by_node or {}
    src, dst = ctx.node, dest(ctx)
    if metric is M.SOME_MEM_PSI_US and src in tiers and dst in tiers:
        return None if tiers[src] == tiers[dst] else tiers[dst] > tiers[src]
    if metric.takes_path and not acts_on_cgroup(
        [f.to_model() for f in ctx.scheme.filters], ctx.goal.path
    ):
        return None
    direction = ctx.direction
    return None if direction is None else direction is model.Direction.RAISES


def dest(ctx: ContextConfig) -> int:
    """The node ``ctx``'s scheme moves pages to; -1 for an lru action, which moves pages
    between LRU lists on their node."""
    target = ctx.scheme.target_nid
    return -1 if target is None else target


def canonical(metric: M) -> M:
    """The metric the controller steers: a free metric's used one."""
    return COMPLEMENT_OF.get(metric, metric)


def canonical_bp(metric: M, value: int) -> int:
    """A value of ``metric`` as its :func:`canonical` metric's (and back: it is its own
    inverse)."""
    return BP_SCALE - value if metric in COMPLEMENT_OF else value


def movable_bytes(
    ctx: ContextConfig, eligible_on_source: int, memory: MemoryReadings | None
) -> int:
    """What ``ctx``'s scheme could move now: its eligible memory on its node, and of a
    cgroup goal only the cgroup's pages there."""
    if memory is None or not M(ctx.goal.metric).takes_path:
        return eligible_on_source
    mine = memory.memcg_node_bytes.get(ctx.goal.path, {}).get(ctx.node, 0)
    return min(eligible_on_source, mine)
