"""Translate a context's configuration into the DAMON objects a backend writes.

The mode decides the quota: ``daemon`` starts idle and damond sets the size
quota each iteration; ``kernel`` gives the kernel a ``user_input`` goal and the
quota as a cap; ``native`` gives it ``node_eligible_mem_bp`` to measure itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from damond.config import ContextConfig, KernelFeed, Mode
from damond.control.goalmetric import BP_SCALE
from damond.model import damon as model


def fed_target(ctx: ContextConfig) -> int:
    """The goal target the kernel sees in ``kernel`` mode (never 0: 0 disables a goal)."""
    target = ctx.goal.target_bp
    if ctx.controller.kernel_feed is KernelFeed.CORRECTED and (
        ctx.direction is model.Direction.LOWERS
    ):
        target = BP_SCALE - target
    return max(1, target)


def fed_value(ctx: ContextConfig, metric_bp: int) -> int:
    """The ``user_input`` current value for a measured metric."""
    if ctx.controller.kernel_feed is KernelFeed.CORRECTED and (
        ctx.direction is model.Direction.LOWERS
    ):
        return BP_SCALE - metric_bp
    return metric_bp


def build_context(ctx: ContextConfig, regions: Sequence[model.AddressRange] = ()) -> model.Context:
    quota_cfg = ctx.scheme.quota
    weights = model.Weights(
        sz_permil=quota_cfg.weights.sz_permil,
        nr_accesses_permil=quota_cfg.weights.nr_accesses_permil,
        age_permil=quota_cfg.weights.age_permil,
    )
    goals: tuple[model.QuotaGoal, ...] = ()
    if ctx.mode is Mode.DAEMON:
        size_quota = model.IDLE_QUOTA_BYTES
    elif ctx.mode is Mode.KERNEL:
        size_quota = quota_cfg.max_bytes
        goals = (model.QuotaGoal(model.GoalMetric.USER_INPUT, target_value=fed_target(ctx)),)
    else:
        size_quota = quota_cfg.max_bytes
        goals = (
            model.QuotaGoal(
                model.GoalMetric.NODE_ELIGIBLE_MEM_BP,
                target_value=max(1, ctx.goal.target_bp),
                nid=ctx.goal.nid,
            ),
        )
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
            goals=goals,
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
