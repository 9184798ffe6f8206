"""Translate a context's configuration into the DAMON objects a backend writes.

The mode decides the quota: ``daemon`` starts idle and damond sets the size
quota each iteration; ``kernel`` gives the kernel a ``user_input`` goal and the
quota as a cap; ``native`` gives it ``node_eligible_mem_bp`` to measure itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from damond.config import ContextConfig, KernelFeed, Mode
from damond.model import damon as model
from damond.model.units import BP_SCALE


def _turned_around(ctx: ContextConfig) -> bool:
    """Whether the kernel is fed the complement of the metric: a scheme that lowers the
    metric raises its complement, which is what the kernel's tuner assumes of a quota."""
    return (
        ctx.mode is Mode.KERNEL
        and ctx.controller.kernel_feed is KernelFeed.CORRECTED
        and ctx.direction is model.Direction.LOWERS
    )


def kernel_target(ctx: ContextConfig) -> int:
    """The goal target the kernel sees in ``kernel`` and ``native`` modes (never 0: the
    kernel skips a goal whose target is 0)."""
    target = ctx.goal.target_bp
    if _turned_around(ctx):
        target = BP_SCALE - target
    return max(1, target)


def fed_value(ctx: ContextConfig, metric_bp: int) -> int:
    """The ``user_input`` current value for a measured metric (``kernel`` mode)."""
    return BP_SCALE - metric_bp if _turned_around(ctx) else metric_bp


def _goals(ctx: ContextConfig, target: int) -> tuple[model.QuotaGoal, ...]:
    if ctx.mode is Mode.KERNEL:
        return (model.QuotaGoal(model.GoalMetric.USER_INPUT, target_value=target),)
    if ctx.mode is Mode.NATIVE:
        return (
            model.QuotaGoal(
                model.GoalMetric.NODE_ELIGIBLE_MEM_BP, target_value=target, nid=ctx.goal.nid
            ),
        )
    return ()


def build_context(
    ctx: ContextConfig,
    regions: Sequence[model.AddressRange] = (),
    *,
    with_targets: bool = True,
) -> model.Context:
    """The DAMON context of ``ctx``. Without targets (all goal targets 0) it is the
    context's structure: what cannot change without restarting its kdamond."""
    quota_cfg = ctx.scheme.quota
    weights = model.Weights(
        sz_permil=quota_cfg.weights.sz_permil,
        nr_accesses_permil=quota_cfg.weights.nr_accesses_permil,
        age_permil=quota_cfg.weights.age_permil,
    )
    size_quota = model.IDLE_QUOTA_BYTES if ctx.mode is Mode.DAEMON else quota_cfg.max_bytes
    pattern = ctx.scheme.access_pattern
    scheme = model.Scheme(
        action=model.Action(ctx.scheme.action),
        target_nid=ctx.scheme.target_nid,
        access_pattern=model.AccessPattern(
            nr_accesses_min=pattern.nr_accesses_min,
            nr_accesses_max=pattern.nr_accesses_max,
            age_min=pattern.age_min,
            age_max=pattern.age_max,
        ),
        quota=model.Quota(
            bytes=size_quota,
            reset_interval_ms=quota_cfg.reset_interval_ms,
            weights=weights,
            goals=_goals(ctx, kernel_target(ctx) if with_targets else 0),
            goal_tuner=ctx.controller.tuner,
        ),
    )
    return model.Context(
        name=ctx.name,
        operations=model.Operations.PADDR,
        intervals=model.Intervals(
            sample_us=ctx.intervals.sample_us,
            aggr_us=ctx.intervals.aggr_us,
            update_us=ctx.intervals.update_us,
        ),
        nodes=(ctx.node,),
        regions=tuple(regions),
        schemes=(scheme,),
    )
