"""What a context needs from the kernel, checked before anything is written: a host
that cannot run the planned contexts is refused at open, with every reason at once;
a cgroup a scheme names must exist when its kdamond starts."""

from __future__ import annotations

from damond.backend.sysfs import filters
from damond.backend.sysfs.features import METRIC_SINCE, Features
from damond.backend.sysfs.hostmemory import find_cgroup2_mount
from damond.backend.sysfs.io import Session
from damond.backend.sysfs.tree import WORKING_SCHEME
from damond.config import SysfsConfig
from damond.model import damon as model
from damond.model.errors import BackendError


def feature_problems(
    ctx: model.Context, f: Features, kernel: str, where: str | None = None
) -> list[str]:
    """Why this kernel cannot run ``ctx``, one line per missing feature; ``where`` names
    the context in the configuration (``contexts[0]``), by default by its name."""
    out: list[str] = []
    where = where or f"contexts.{ctx.name}"
    working = ctx.schemes[WORKING_SCHEME]
    if not f.migrate_hot and not working.action.moves_lru:  # lru_prio/deprio: 6.0, no nid
        out.append(
            f"{where}.scheme.action: {working.action.value} needs Linux 6.11+ (kernel {kernel})"
        )
    metrics = {g.metric for g in working.quota.goals}
    if metrics and not f.quota_goals:
        out.append(f"{where}.goal: quota goals need Linux 6.8+ (kernel {kernel})")
    elif metrics:
        native = f.native_metrics()
        for metric in sorted(metrics - native - {model.GoalMetric.USER_INPUT}):
            out.append(
                f"{where}.goal.metric: mode native needs the kernel's {metric.value} goal "
                f"metric (Linux {METRIC_SINCE[metric]}+), which kernel {kernel} lacks; use "
                'mode = "kernel" (damond computes the metric and feeds it as user_input)'
            )
    if working.quota.goal_tuner is not model.GoalTuner.CONSIST and not f.goal_tuner:
        out.append(
            f"{where}.controller.tuner: {working.quota.goal_tuner.value!r} needs goal_tuner "
            f'(Linux 7.1+), which kernel {kernel} lacks; use tuner = "consist"'
        )
    out += filters.problems(working.filters, f, f"{where}.scheme", kernel)
    if not (f.nr_snapshots or f.tried_bytes):
        out.append(
            f"{where}: measuring eligible bytes needs tried_regions/total_bytes (Linux 6.6+) "
            f"or stats/nr_snapshots (7.0+), kernel {kernel} has neither"
        )
    return out


def cgroup_problems(s: Session, ctx: model.Context, cfg: SysfsConfig, where: str) -> list[str]:
    """The cgroups the kernel would have to find for ``ctx`` (its ``memcg`` filters, a
    native ``node_memcg_*`` goal) that do not exist, one line each; none known when no
    cgroup2 mount is (the kernel then has the last word)."""
    working = ctx.schemes[WORKING_SCHEME]
    named = [
        (f"{where}.scheme.filters[{j}].memcg_path", f.memcg_path)
        for j, f in enumerate(working.filters)
        if f.type is model.FilterType.MEMCG
    ]
    named += [(f"{where}.goal.path", g.path) for g in working.quota.goals if g.metric.takes_path]
    if not named:
        return []
    try:
        mount = cfg.cgroup_root or find_cgroup2_mount(s, cfg.proc_root / "self" / "mounts")
    except BackendError:
        return []
    return [
        f"{field}: no cgroup {path} (no directory {mount / path.lstrip('/')}); the kernel "
        "takes no scheme on a cgroup that does not exist (retried as the context restarts)"
        for field, path in named
        if not s.exists(mount / path.lstrip("/"))
    ]
