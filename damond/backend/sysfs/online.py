"""Changes to a running kdamond, committed without stopping it: the working scheme's
quota (``daemon`` mode), its goal (``kernel`` and ``native``), and the regions and
filters after memory was hot-(un)plugged."""

from __future__ import annotations

from damond.backend.sysfs import paths, tree
from damond.backend.sysfs.context import RunningContext, check_nodes
from damond.backend.sysfs.features import Features
from damond.backend.sysfs.io import Session, SysfsWorker
from damond.backend.sysfs.kdamond import ADOPT_SKIP, log
from damond.backend.sysfs.topology import Topology
from damond.config import SysfsConfig
from damond.model import damon as model
from damond.model.errors import BackendError


async def _commit(
    worker: SysfsWorker, c: RunningContext, values: dict[str, str], command: str
) -> None:
    """Write ``values`` (files of the layout) and have the kernel take them by
    ``command``; the context's layout follows once they are in."""
    lay = c.layout.with_values(values)

    def job(s: Session) -> None:
        changes = c.kd.apply(s, list(values.items()))
        c.kd.command(s, c.ctx.name, command, lay, changes)

    await worker.call(job)
    c.layout = lay


async def set_quota(worker: SysfsWorker, c: RunningContext, quota_bytes: int) -> None:
    values = {paths.quota(tree.WORKING_SCHEME, "bytes"): str(quota_bytes)}
    await _commit(worker, c, values, paths.COMMIT)


async def feed_goal(
    worker: SysfsWorker, c: RunningContext, current_value: int, target_value: int
) -> None:
    goals = c.ctx.schemes[tree.WORKING_SCHEME].quota.goals
    if not goals:
        raise BackendError(f"context {c.ctx.name}: its scheme has no quota goal to feed")
    values = {paths.goal(tree.WORKING_SCHEME, 0, "target_value"): str(target_value)}
    if goals[0].metric is model.GoalMetric.USER_INPUT:
        values[paths.goal(tree.WORKING_SCHEME, 0, "current_value")] = str(current_value)
    await _commit(worker, c, values, paths.COMMIT_QUOTA_GOALS)


async def follow_topology(
    worker: SysfsWorker,
    c: RunningContext,
    topo: Topology,
    features: Features,
    cfg: SysfsConfig,
) -> None:
    """Memory was hot-(un)plugged if ``topo`` differs: re-stage regions and filters."""
    if topo == c.topo:
        return
    check_nodes(c.ctx, topo)
    lay = tree.layout(c.ctx, topo, features, cfg)
    if lay.stat_nodes != c.layout.stat_nodes:
        raise BackendError(f"context {c.ctx.name}: the set of memory nodes changed; restarting")

    def job(s: Session) -> None:
        changes = c.kd.apply(s, lay.entries, ADOPT_SKIP)
        c.kd.verify(s, c.ctx.name, lay, ADOPT_SKIP)
        c.kd.command(s, c.ctx.name, paths.COMMIT, lay, changes)

    log.info("memory topology changed; re-staging", context=c.ctx.name)
    await worker.call(job)
    c.layout, c.topo = lay, topo
