"""Translate a context's configuration into the DAMON objects a backend writes.

The mode decides the quota: ``daemon`` starts idle and damond sets the size
quota each iteration; ``kernel`` gives the kernel a ``user_input`` goal and the
quota as a cap; ``native`` gives it the goal's own metric (with its node and cgroup)
to measure itself. The scheme's filters are the same in every mode.
"""

from __future__ import annotations

from collections.abc import Sequence

from damond.config import ContextConfig, KernelFeed, Mode
from damond.control.workload import dest
from damond.model import damon as model
from damond.model.units import BP_SCALE


def _metric(ctx: ContextConfig) -> model.GoalMetric:
    return model.GoalMetric(ctx.goal.metric)


def _turned_around(ctx: ContextConfig) -> bool:
    """Whether the kernel is fed the complement of the metric: a scheme that lowers the
    metric raises its complement, which is what the kernel's tuner assumes of a quota
    (a metric in basis points has one)."""
    return (
        ctx.mode is Mode.KERNEL
        and ctx.controller.kernel_feed is KernelFeed.CORRECTED
        and ctx.direction is model.Direction.LOWERS
        and _metric(ctx).in_basis_points
    )


def kernel_target(ctx: ContextConfig) -> int:
    """The goal target the kernel sees in ``kernel`` and ``native`` modes, in the
    metric's unit (never 0: the kernel skips a goal whose target is 0)."""
    target = ctx.goal.target
    if _turned_around(ctx):
        target = BP_SCALE - target
    return max(1, target)


def fed_value(ctx: ContextConfig, metric_bp: int) -> int:
    """The ``user_input`` current value for a measured metric (``kernel`` mode)."""
    return BP_SCALE - metric_bp if _turned_around(ctx) else metric_bp


def cannot_miss(ctx: ContextConfig) -> bool:
    """Whether no move can be needed: a target of 10000 bp for a scheme that lowers the
    metric, or 0 for one that raises it."""
    if ctx.direction is model.Direction.RAISES:
        return ctx.goal.target == 0
    return _metric(ctx).in_basis_points and ctx.goal.target == BP_SCALE


def goal_holds(ctx: ContextConfig, metric_bp: int) -> bool:
    """Whether the goal needs no move: a target it :func:`cannot_miss`, or a metric
    within the dead band of its target or past it on the scheme's far side."""
    if cannot_miss(ctx):
        return True
    target = ctx.goal.target
    gap = target - metric_bp if ctx.direction is model.Direction.RAISES else metric_bp - target
    return gap <= ctx.controller.deadband_bp


def _resting(ctx: ContextConfig) -> bool:
    return ctx.controller.kernel_feed is KernelFeed.CORRECTED and cannot_miss(ctx)


def kernel_feed(ctx: ContextConfig, metric_bp: int) -> tuple[int, int]:
    """``(current_value, target_value)`` of the ``user_input`` goal (``kernel`` mode).

    A goal that holds is fed at twice its target: the kernel's score is then
    ``2 * 10000``, at which the ``consist`` tuner drops to one byte and ``temporal``
    to nothing, so the tuner rests instead of moving pages nobody needs moved (a
    target of 10000 on a lowering scheme is otherwise fed as target 1, current 0: a
    score of 0, full power). The ``literal`` feed is left as the seed RFC had it.
    """
    target = kernel_target(ctx)
    if ctx.controller.kernel_feed is KernelFeed.CORRECTED and goal_holds(ctx, metric_bp):
        return 2 * target, target
    return fed_value(ctx, metric_bp), target


def resting_feed(ctx: ContextConfig) -> tuple[int, int] | None:
    """The feed of a goal that needs no measurement to hold (it cannot be missed), so
    that the tuner rests from the start, before anything is measured; None otherwise."""
    target = kernel_target(ctx)
    return (2 * target, target) if ctx.mode is Mode.KERNEL and _resting(ctx) else None


def _goals(ctx: ContextConfig, target: int) -> tuple[model.QuotaGoal, ...]:
    if ctx.mode is Mode.KERNEL:
        current = 2 * target if _resting(ctx) else 0  # 0: the backend's own start value
        goal = model.QuotaGoal(model.GoalMetric.USER_INPUT, target, current_value=current)
        return (goal,)
    if ctx.mode is Mode.NATIVE:
        metric = _metric(ctx)
        nid = ctx.goal.nid if metric.takes_nid else 0
        return (model.QuotaGoal(metric, target_value=target, nid=nid, path=ctx.goal.path),)
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
        target_nid=dest(ctx),
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
        filters=tuple(f.to_model() for f in ctx.scheme.filters),
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
        memory_goal=_memory_goal(ctx, with_targets),
    )


_SHARE_METRICS = (model.GoalMetric.NODE_TARGET_MEM_BP, model.GoalMetric.NODE_ELIGIBLE_MEM_BP)


def _memory_goal(ctx: ContextConfig, with_targets: bool) -> model.QuotaGoal | None:
    """The goal damond computes from the host's memory readings, in every mode (the
    node-share metrics are measured by DAMON's own stat schemes instead)."""
    metric = _metric(ctx)
    if metric in _SHARE_METRICS:
        return None
    target = ctx.goal.target if with_targets else 0
    nid = ctx.goal.nid if metric.takes_nid else 0
    return model.QuotaGoal(metric, target, nid=nid, path=ctx.goal.path)
