"""What a context needs from the kernel, checked before anything is written: a host
that cannot run the planned contexts is refused at open, with every reason at once."""

from __future__ import annotations

from damond.backend.sysfs.features import Features
from damond.backend.sysfs.tree import WORKING_SCHEME
from damond.model import damon as model


def feature_problems(ctx: model.Context, f: Features, kernel: str) -> list[str]:
    """Why this kernel cannot run ``ctx``, one line per missing feature."""
    out: list[str] = []
    where = f"context {ctx.name!r}"
    working = ctx.schemes[WORKING_SCHEME]
    if not f.migrate_hot:
        out.append(f"{where}: {working.action.value} needs Linux 6.11+ (kernel {kernel})")
    metrics = {g.metric for g in working.quota.goals}
    if metrics and not f.quota_goals:
        out.append(f"{where}: quota goals need Linux 6.8+ (kernel {kernel})")
    if model.GoalMetric.NODE_ELIGIBLE_MEM_BP in metrics and not (
        f.node_eligible_mem_bp and f.goal_nid
    ):
        out.append(
            f"{where}: mode native needs the kernel's node_eligible_mem_bp goal metric "
            f'(Linux 7.2+), which kernel {kernel} lacks; use mode = "kernel" (damond feeds '
            "the metric as user_input)"
        )
    if working.quota.goal_tuner is not model.GoalTuner.CONSIST and not f.goal_tuner:
        out.append(
            f"{where}: controller.tuner {working.quota.goal_tuner.value!r} needs goal_tuner "
            f'(Linux 7.1+), which kernel {kernel} lacks; use tuner = "consist"'
        )
    if not (f.nr_snapshots or f.tried_bytes):
        out.append(
            f"{where}: measuring eligible bytes needs tried_regions/total_bytes (Linux 6.6+) "
            f"or stats/nr_snapshots (7.0+), kernel {kernel} has neither"
        )
    return out
